"""Memory-mapped ``.npy`` arrays read back with their expected dtype and shape checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asr_distill.errors import InputError


def load_npy_checked(path: str | Path, dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``np.load(path, mmap_mode='r')`` (never unpickling), or an :class:`InputError`
    naming the file if it is missing, truncated, or not of ``dtype``/``shape`` (as the
    directory's meta.json says). ``what`` names the kind of file in the message."""
    path = Path(path)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{what} file is missing", path) from None
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"truncated or corrupt array ({e})", path) from None
    if arr.dtype != np.dtype(dtype) or arr.shape != shape:
        raise InputError(
            f"holds {arr.dtype} {arr.shape}, meta.json says {np.dtype(dtype)} {shape}", path
        )
    return arr
