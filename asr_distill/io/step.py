"""The lifecycle of a recipe step that writes one output directory, the same for every
step (Kaldi's exp-dir layout): skip it when finished (done marker) unless forced; else
clear the marker and what a rebuild must not keep, remove temporary files a killed run
left, log to ``<dir>/log/<name>``, write the resolved ``config.yaml``, run the step,
and leave the done marker only when it ends without an error."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from asr_distill.config import differences, field_defaults, save_config
from asr_distill.errors import InputError
from asr_distill.io.atomic import is_done, mark_done, remove_stale_temps
from asr_distill.logging_setup import file_log

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
LOG_DIR = "log"


@contextlib.contextmanager
def step_log(
    out_dir: str | Path,
    log_name: str,
    *,
    force: bool,
    config: Any | Mapping[str, Any] | None = None,
    marker: str = ".done",
    clear: Iterable[str] = (),
    config_file: str = CONFIG_FILE,
    ignore: Iterable[str] = (),
) -> Iterator[bool]:
    """``with step_log(out, "align.log", force=f, config=c) as run: if not run: return``.

    Yields False (and logs "nothing to do") when ``out_dir`` holds ``marker`` and not
    ``force``. Otherwise removes the marker and the files named in ``clear`` (relative
    to ``out_dir``), creates ``out_dir``, removes stale temporary files, logs to
    ``out_dir/log/log_name`` for the duration of the block, writes ``config`` (a
    dataclass or a mapping; None: the step writes its own) to ``config_file``, yields
    True, and writes the marker when the block ends without an exception.

    A finished step asked again with a dataclass ``config`` other than the one it
    recorded is refused (:class:`InputError` naming the settings that differ), so a
    re-run with new options never goes on with outputs made with the old ones. A field
    the record lacks (added since) counts as its default; the fields in ``ignore`` (those
    that do not change the output) are not compared. Steps that record a mapping check
    what they need themselves.
    """
    out_dir = Path(out_dir)
    if is_done(out_dir, marker) and not force:
        if dataclasses.is_dataclass(config):
            _check_same_config(out_dir / config_file, config, set(ignore))
        log.info("%s is complete; nothing to do (use --force to redo)", out_dir)
        yield False
        return
    for name in (marker, *clear):
        (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    with file_log(out_dir / LOG_DIR / log_name):
        if config is not None:
            save_config(config, out_dir / config_file)
        yield True
        mark_done(out_dir, marker)


def _check_same_config(path: Path, config: Any, ignore: set[str]) -> None:
    if not path.is_file():
        return
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(f"unreadable record of a finished step ({e})", path) from None
    if not isinstance(saved, dict):
        raise InputError("the record of a finished step is not a mapping", path)

    def as_recorded(value: Any) -> Any:  # what the YAML record holds (tuples as lists)
        if dataclasses.is_dataclass(value):  # a nested config, as asdict writes it
            value = dataclasses.asdict(value)
        return yaml.safe_load(yaml.safe_dump(value))

    asked = {k: v for k, v in as_recorded(config).items() if k not in ignore}
    # a field the record lacks counts as its default (or as asked, if it has none)
    defaults = field_defaults(type(config))
    old = {k: saved[k] if k in saved else as_recorded(defaults.get(k, v)) for k, v in asked.items()}
    diff = [f"{k}: {a!r} -> {b!r}" for k, a, b in differences(old, asked)]
    if diff:
        raise InputError(
            f"finished with other settings ({'; '.join(diff[:5])}); redo it with --force "
            "or write to another directory",
            path.parent,
        )


def read_done_meta(out_dir: Path, what: str, remedy: str, meta_name: str = "meta.json") -> dict:
    """The JSON metadata of a finished step directory ``out_dir`` (a frame store, a
    soft-target cache): an :class:`InputError` naming the path if the directory is
    missing, has no done marker (``remedy`` says what to run) or no valid metadata.
    ``what`` names the kind of directory in the messages."""
    if not out_dir.is_dir():
        raise InputError(f"{what} directory does not exist", out_dir)
    if not is_done(out_dir):
        raise InputError(f"{what} is incomplete (no .done marker); {remedy}", out_dir)
    meta_path = out_dir / meta_name
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{what} has no {meta_name}", meta_path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{meta_name} is not valid JSON ({e})", meta_path) from None
