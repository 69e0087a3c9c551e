"""The start and end of a recipe step that writes one output directory: skip it if
finished (done marker) unless forced, else clear the marker, remove temporary files
a killed run left, and log to ``<dir>/log/<name>``."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from asr_distill.errors import InputError
from asr_distill.io.atomic import is_done, remove_stale_temps
from asr_distill.logging_setup import add_file_log

log = logging.getLogger(__name__)


@contextlib.contextmanager
def step_log(out_dir: str | Path, log_name: str, *, force: bool) -> Iterator[bool]:
    """``with step_log(out, "align.log", force=f) as run: if not run: return None``.

    Yields False (and logs "nothing to do") when ``out_dir`` is finished and not
    ``force``; otherwise removes the done marker, creates ``out_dir``, logs to
    ``out_dir/log/log_name`` for the duration of the block and yields True.
    """
    out_dir = Path(out_dir)
    if is_done(out_dir) and not force:
        log.info("%s is complete; nothing to do (use --force to redo)", out_dir)
        yield False
        return
    (out_dir / ".done").unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    handler = add_file_log(out_dir / "log" / log_name)
    try:
        yield True
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


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
