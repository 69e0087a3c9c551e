"""Kaldi ark/scp I/O through kaldi-io, with scp offsets kept while writing.

``kaldi_io`` prints a KALDI_ROOT banner to stderr when imported and no Kaldi is
installed; it is harmless, so the import here swallows it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

with contextlib.redirect_stderr(io.StringIO()):
    import kaldi_io


def write_ark_entry(f: BinaryIO, ark_path: str | Path, key: str, value: np.ndarray) -> str:
    """Append ``key value`` (a float matrix or an int vector) to an open binary ark.

    Returns the scp rxfilename of the entry (``<abs ark path>:<byte offset>``), as
    Kaldi's ``ark,scp:`` writers do. ``ark_path`` is the final name of the ark
    (which may still be a temporary file being written).
    """
    start = f.tell()
    if value.ndim == 2:
        kaldi_io.write_mat(f, value, key=key)
    elif value.ndim == 1 and np.issubdtype(value.dtype, np.integer):
        kaldi_io.write_vec_int(f, value, key=key)
    elif value.ndim == 1:
        kaldi_io.write_vec_flt(f, value, key=key)
    else:
        raise ValueError(f"cannot write a {value.ndim}-d array to an ark")
    return f"{Path(ark_path).resolve()}:{start + len(key.encode('utf-8')) + 1}"


def read_mat(rxfilename: str) -> np.ndarray:
    """One matrix from an rxfilename (``ark:offset`` path as in an scp)."""
    return kaldi_io.read_mat(rxfilename)


def read_mat_scp(scp_path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """(key, matrix) pairs of an scp file, in file order."""
    yield from kaldi_io.read_mat_scp(str(scp_path))


def read_mat_ark(ark_path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    yield from kaldi_io.read_mat_ark(str(ark_path))


def read_vec_int_ark(ark_path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    yield from kaldi_io.read_vec_int_ark(str(ark_path))


def read_vec_int_scp(scp_path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    yield from kaldi_io.read_vec_int_scp(str(scp_path))
