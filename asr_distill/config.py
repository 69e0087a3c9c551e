"""Configs are dataclasses: defaults, overridden by a YAML file, overridden by flags.

The resolved config is written into each output directory so a run can be rebuilt
from its artifacts.
"""

from __future__ import annotations

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
    """Write a dataclass config as YAML (atomically)."""
    with atomic_open(path) as f:
        yaml.safe_dump(dataclasses.asdict(config), f, sort_keys=True)
