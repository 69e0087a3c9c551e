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


def add_config_options(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    choices: dict[str, tuple] | None = None,
    skip: tuple[str, ...] = (),
) -> None:
    """One ``--field-name`` option per scalar or list-of-scalars field of the dataclass
    ``cls`` (bools as ``--name/--no-name``, lists as ``--name A B ...``), in an argument
    group described by the class docstring; every option defaults to None, so the YAML
    file or the dataclass default applies unless it is given. :func:`config_from_args`
    builds the config back."""
    doc = " ".join((cls.__doc__ or "").split())
    group = parser.add_argument_group(f"{cls.__name__} options", doc)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).replace(" | None", "")
        default = f"(default {f.default})"
        if kind == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               help=default)  # fmt: skip
        elif kind in _SCALARS:
            group.add_argument(flag, type=_SCALARS[kind], default=None, help=default,
                               choices=(choices or {}).get(f.name))  # fmt: skip
        elif kind.startswith("list[") and kind[5:-1] in _SCALARS:
            factory = f.default_factory if f.default_factory is not dataclasses.MISSING else None
            shown = f"(default {factory() if factory else f.default})"
            group.add_argument(flag, type=_SCALARS[kind[5:-1]], nargs="+", default=None,
                               help=shown, metavar=f.name.upper())  # fmt: skip
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
    try:
        return load_config(cls, yaml_path, **{**given, **extra})
    except InputError:
        raise
    except (ValueError, TypeError) as e:
        raise InputError(f"bad option: {e}", yaml_path) from None
