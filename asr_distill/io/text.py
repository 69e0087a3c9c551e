"""Reading text files line by line as UTF-8, with errors that name the file and line."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from asr_distill.errors import InputError


def utf8_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a text file, read through gzip when it is named
    ``.gz``, the line ending (``\\n`` or ``\\r\\n``) removed. A file that cannot be read,
    or a line that is not UTF-8, is an :class:`InputError` naming the file (and line)."""
    path = Path(path)
    try:
        f = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path) from None
    with f:
        try:
            for lineno, raw in enumerate(f, start=1):
                try:
                    yield lineno, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    raise InputError(f"not valid UTF-8 ({e.reason} at byte {e.start})", path,
                                     lineno) from None  # fmt: skip
        except (OSError, EOFError) as e:  # a torn gzip stream, a read error
            raise InputError(f"cannot read: {e}", path) from None
