"""Kaldi ark/scp I/O through kaldi-io, with scp offsets kept while writing.

``kaldi_io`` prints a KALDI_ROOT banner to stderr when imported and no Kaldi is
installed; it is harmless, so the import here swallows it.
"""

from __future__ import annotations

import contextlib
import io
import re
import struct
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


def write_matrix_file(path: str | Path, mat: np.ndarray) -> None:
    """A single matrix in Kaldi's binary format (as ``final.mat`` or ``trans.1``),
    written atomically; Kaldi's ``copy-matrix`` and :func:`read_mat` read it."""
    from asr_distill.io import atomic_open

    with atomic_open(path, "wb", encoding=None) as f:
        kaldi_io.write_mat(f, np.ascontiguousarray(mat, np.float32))


def read_mat_scp(scp_path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """(key, matrix) pairs of an scp file, in file order."""
    yield from kaldi_io.read_mat_scp(str(scp_path))


def read_mat_ark(ark_path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    yield from kaldi_io.read_mat_ark(str(ark_path))


def read_vec_int_ark(ark_path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    yield from kaldi_io.read_vec_int_ark(str(ark_path))


def read_vec_int_scp(scp_path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    yield from kaldi_io.read_vec_int_scp(str(scp_path))


KALDI_READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    AssertionError,
    IndexError,
    UnicodeDecodeError,
    struct.error,
    kaldi_io.UnknownMatrixHeader,
    kaldi_io.BadSampleSize,
    kaldi_io.SubprocessFailed,
)

RANGE_RE = re.compile(r"^(.+)\[(\d*):(\d*)(?:,(\d*):(\d*))?\]$")


def read_rx_matrix(rx: str) -> np.ndarray:
    """A matrix from an scp rxfilename, honouring Kaldi's inclusive ``[r1:r2,c1:c2]`` ranges."""
    m = RANGE_RE.match(rx)
    if m is None:
        return kaldi_io.read_mat(rx)
    mat = kaldi_io.read_mat(m.group(1))
    bounds = [None if g in (None, "") else int(g) for g in m.groups()[1:]]
    r1, r2, c1, c2 = bounds
    rows = slice(r1, None if r2 is None else r2 + 1)
    cols = slice(c1, None if c2 is None else c2 + 1)
    return mat[rows, cols]


def matrix_shape(rx: str) -> tuple[int, int]:
    """(rows, cols) of the matrix an scp entry points to, reading only its header if possible."""
    if RANGE_RE.match(rx) is None and re.search(r":[0-9]+$", rx) and not rx.endswith("|"):
        fd = kaldi_io.open_or_fd(rx)
        try:
            head = fd.read(2)
            kind = fd.read(3)
            if head == b"\0B" and kind in (b"FM ", b"DM "):
                size1, rows, size2, cols = struct.unpack("<bibi", fd.read(10))
                if size1 == 4 and size2 == 4:
                    return rows, cols
            elif head == b"\0B" and kind == b"CM ":
                _, _, rows, cols = struct.unpack("<ffii", fd.read(16))
                return rows, cols
        finally:
            fd.close()
    mat = read_rx_matrix(rx)  # text, compressed CM2/CM3, pipes, ranges: read it all
    return mat.shape[0], mat.shape[1] if mat.ndim == 2 else -1
