"""Logging set up once at the CLI entry; recipes/shared/log.sh prints the same format."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s (%(name)s) %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def setup_logging(verbose: bool = False, log_file: str | Path | None = None) -> None:
    """Configure the root logger: stderr, and ``log_file`` too when given."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=LOG_FORMAT,
        datefmt=DATE_FORMAT,
        handlers=handlers,
        force=True,
    )


def add_file_log(log_file: str | Path) -> logging.Handler:
    """Also log to ``log_file`` (a step's ``<dir>/log/<step>.log``); returns the handler."""
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    logging.getLogger().addHandler(handler)
    return handler


@contextlib.contextmanager
def file_log(log_file: str | Path) -> Iterator[None]:
    """Also log to ``log_file`` for the duration of the block. An error that ends the
    block is written there too (the CLI reports it on stderr), so a step's log says
    why it stopped."""
    handler = add_file_log(log_file)
    try:
        yield
    except Exception as e:
        handler.handle(logging.LogRecord("asr_distill", logging.ERROR, __file__, 0,
                                         "%s", (e,), None))  # fmt: skip
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
