"""Exceptions for bad user input, carrying the offending file and line."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input data: names the file (and line, when known) that caused it."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(f"{where}{message}")
        self.message = message
