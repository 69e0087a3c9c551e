"""Configs are dataclasses: defaults, overridden by a YAML file, overridden by flags.

The resolved config is written into each output directory so a run can be rebuilt
from its artifacts.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

from asr_distill.errors import InputError
from asr_distill.io import atomic_open

C = TypeVar("C")


def field_defaults(cls: type, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The default of every field of the dataclass ``cls`` that has one (factories
    called), but those in ``exclude``: what a record written before a field was added
    stands for."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for every setting that differs between two
    records (nested mappings compared key by key, keys joined with dots), keys sorted."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [(prefix[:-1], old, new)]


def load_config(cls: type[C], yaml_path: str | Path | None = None, **overrides: Any) -> C:
    """Build ``cls`` from its defaults, a YAML mapping, then non-None ``overrides``.

    Unknown keys in the YAML file are an error naming the file, so a typo is never
    silently ignored.
    """
    values: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    if yaml_path is not None:
        path = Path(yaml_path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            raise InputError(
                f"invalid YAML: {e}", path, None if line is None else line + 1
            ) from None
        if not isinstance(loaded, dict):
            raise InputError("expected a mapping of option: value", path)
        unknown = sorted(set(loaded) - names)
        if unknown:
            raise InputError(f"unknown option(s) {unknown} for {cls.__name__}", path)
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - names)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for {cls.__name__}")
    return cls(**values)


def save_config(config: Any, path: str | Path) -> None:
    """Write a dataclass config, or a mapping of a step's settings (paths as strings), as
    YAML with sorted keys (atomically)."""
    if dataclasses.is_dataclass(config):
        values = dataclasses.asdict(config)
    else:
        values = {k: str(v) if isinstance(v, Path) else v for k, v in config.items()}
    with atomic_open(path) as f:
        yaml.safe_dump(values, f, sort_keys=True)


_SCALARS = {"int": int, "float": float, "str": str}


def _list_parser(item_type: Any) -> Any:
    """Parse one argument holding a list, its items separated by commas or spaces
    (``--speeds 0.9,1.0,1.1``, ``--lmwts "7 9 11"``). One argument, not several: an
    option taking several would swallow the positional arguments after it."""

    def parse(text: str) -> list:
        try:
            return [item_type(x) for x in text.replace(",", " ").split()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {item_type.__name__} values separated by commas: {text!r}"
            ) from None

    return parse


def _list_item(kind: str) -> str | None:
    """The scalar item type of ``list[X]``, ``tuple[X, ...]`` or ``tuple[X, X, ...]``."""
    for prefix in ("list[", "tuple["):
        if kind.startswith(prefix) and kind.endswith("]"):
            items = {x.strip() for x in kind[len(prefix) : -1].split(",")} - {"..."}
            if len(items) == 1 and (item := items.pop()) in _SCALARS:
                return item
    return None


def add_config_options(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    choices: dict[str, tuple] | None = None,
    skip: tuple[str, ...] = (),
) -> None:
    """One ``--field-name`` option per scalar, list or tuple field of the dataclass
    ``cls`` (bools as ``--name/--no-name``, lists as one argument: ``--name A,B`` or
    ``--name 'A B'``), in an argument group described by the class docstring; every
    option defaults to None, so the YAML file or the dataclass default applies unless it
    is given. :func:`config_from_args` builds the config back."""
    doc = " ".join((cls.__doc__ or "").split())
    group = parser.add_argument_group(f"{cls.__name__} options", doc)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).replace(" | None", "")
        has_factory = f.default_factory is not dataclasses.MISSING
        shown = str(f.default_factory() if has_factory else f.default)
        default = f"(default {shown if len(shown) <= 60 else shown[:56] + ' ...'})"
        if kind == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               help=default)  # fmt: skip
        elif kind in _SCALARS:
            group.add_argument(flag, type=_SCALARS[kind], default=None, help=default,
                               choices=(choices or {}).get(f.name))  # fmt: skip
        elif item := _list_item(kind):
            group.add_argument(flag, type=_list_parser(_SCALARS[item]), default=None,
                               help=default, metavar="A,B,...")  # fmt: skip
        else:  # a field that silently got no option would be worse
            raise TypeError(f"{cls.__name__}.{f.name}: no CLI option for type {f.type!r}; "
                            "skip it or handle the type")  # fmt: skip


def config_from_args(cls: type[C], args: argparse.Namespace, yaml_path: str | Path | None,
                     **extra: Any) -> C:  # fmt: skip
    """``cls`` from its defaults, the YAML file ``yaml_path``, then the options that
    :func:`add_config_options` added and were given (and ``extra`` values); a bad value
    is an :class:`InputError` naming the YAML file."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in names}
    for f in dataclasses.fields(cls):  # tuple fields get tuples, as their defaults are
        if str(f.type).startswith("tuple[") and given.get(f.name) is not None:
            given[f.name] = tuple(given[f.name])
    try:
        given.update({k: v for k, v in extra.items() if v is not None})
        return load_config(cls, yaml_path, **given)
    except InputError:
        raise
    except (ValueError, TypeError) as e:
        raise InputError(f"bad option: {e}", yaml_path) from None
