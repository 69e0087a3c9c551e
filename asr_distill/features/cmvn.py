"""Kaldi's per-speaker CMVN applied to a feature matrix (``apply-cmvn``), in numpy only:
the GMM steps read features through it and need no torch (whose import costs more
than a small step's work)."""

from __future__ import annotations

import numpy as np


def apply_cmvn(feats: np.ndarray, stats: np.ndarray, *, norm_vars: bool = False) -> np.ndarray:
    """Kaldi's apply-cmvn: subtract the mean (and divide by the std if ``norm_vars``).

    feats: (T, D); stats: (2, D+1) as written by compute-feats.
    """
    dim = feats.shape[1]
    if stats.shape != (2, dim + 1):
        raise ValueError(f"CMVN stats shape {stats.shape} does not fit features of dim {dim}")
    count = stats[0, dim]
    if count < 1:
        raise ValueError("CMVN stats have a count below 1")
    mean = stats[0, :dim] / count
    out = feats - mean
    if norm_vars:
        var = stats[1, :dim] / count - mean * mean
        out = out / np.sqrt(np.maximum(var, 1e-10))
    return out.astype(np.float32)
