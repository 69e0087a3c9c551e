"""Atomic file writes (temp file in the same directory + ``os.replace``) and done markers.

A step killed half-way never leaves a truncated output under its final name: readers
see either the old file or the complete new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    The caller writes the temporary path with any library (numpy, kaldi-io, soundfile).
    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` when the block succeeds."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def mark_done(directory: str | Path, name: str = ".done") -> None:
    """Leave a done marker in ``directory`` (written last by a step)."""
    with atomic_open(Path(directory) / name) as f:
        f.write("done\n")


def is_done(directory: str | Path, name: str = ".done") -> bool:
    """True if ``directory`` holds a done marker written by :func:`mark_done`."""
    return (Path(directory) / name).is_file()


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def remove_stale_temps(directory: str | Path) -> int:
    """Remove the temporary files (``.<name>.<random>.tmp``) that :func:`atomic_path`
    leaves when its process is killed, anywhere under ``directory``; returns how many.
    Call it when a step starts on ``directory``, before it writes anything."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    removed = 0
    for tmp in directory.rglob(".*.tmp"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink()
            removed += 1
    if removed:
        logging.getLogger(__name__).info(
            "%s: removed %d temporary file(s) left by a killed run", directory, removed
        )
    return removed


def check_free_space(directory: str | Path, needed_bytes: int, what: str) -> None:
    """Refuse (InputError naming ``directory``) to start writing ``needed_bytes`` of
    ``what`` where less is free: a memory-mapped write that runs out of disk dies of
    SIGBUS, with no message."""
    from asr_distill.errors import InputError

    directory = Path(directory)
    free = shutil.disk_usage(directory).free
    if needed_bytes > free:
        raise InputError(f"{what} needs {needed_bytes / 2**30:.2f} GiB but only "
                         f"{free / 2**30:.2f} GiB are free there", directory)  # fmt: skip
