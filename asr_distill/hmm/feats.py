"""GMM features: MFCC with per-speaker CMVN, then deltas, as Kaldi's ``apply-cmvn
--utt2spk=... scp:cmvn.scp scp:feats.scp ark:- | add-deltas``, or spliced frames times
a matrix (LDA+MLLT), as ``... | splice-feats | transform-feats final.mat``.

A model dir with a ``final.mat`` (Kaldi's binary matrix) and ``splice_opts`` uses the
second; without them, the first (see :class:`FeatureTransform`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from asr_distill.data.kaldi_dir import read_table
from asr_distill.errors import InputError
from asr_distill.features.cmvn import apply_cmvn
from asr_distill.hmm.transforms import FeatureTransform
from asr_distill.io.kaldi_ark import read_mat, read_mat_scp

log = logging.getLogger(__name__)


def delta_scales(order: int = 2, window: int = 2) -> list[np.ndarray]:
    """Kaldi's ``DeltaFeatures`` filters: one per order 0..``order``, centred, float32.

    Order 0 is ``[1]``; order i convolves order i-1 with the regression window
    ``n / sum_n n^2`` for ``n`` in ``-window..window`` (so order 2 spans ``+-2 window``).
    """
    base = np.arange(-window, window + 1, dtype=np.float64)
    base /= float(np.sum(base * base))
    scales = [np.ones(1)]
    for _ in range(order):
        scales.append(np.convolve(scales[-1], base))
    return [s.astype(np.float32) for s in scales]


def add_deltas(feats: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """Kaldi's add-deltas: ``feats`` (T, D) -> (T, D * (order + 1)).

    As Kaldi's ``DeltaFeatures::Process``: order i at frame t is
    ``sum_j scales_i[j] x[clamp(t + j, 0, T - 1)]`` with the filters of
    :func:`delta_scales` (order 1 is the regression
    ``sum_n n (x_{t+n} - x_{t-n}) / (2 sum_n n^2)``; order 2 the regression of that
    regression in the interior, the input's edge frames repeated at the edges).
    """
    x = np.ascontiguousarray(feats, np.float32)  # (T, D)
    out = []
    for scales in delta_scales(order, window):
        reach = (len(scales) - 1) // 2
        padded = np.pad(x, ((reach, reach), (0, 0)), mode="edge")  # (T + 2 reach, D)
        acc = np.zeros_like(x)
        for j, scale in enumerate(scales):
            if scale != 0.0:
                acc += scale * padded[j : j + len(x)]
        out.append(acc)
    return np.concatenate(out, axis=1)  # (T, D * (order + 1))


def load_gmm_features(
    data_dir: str | Path,
    *,
    deltas: bool = True,
    norm_vars: bool = False,
    transform: FeatureTransform | None = None,
) -> dict[str, np.ndarray]:
    """utt -> (T, D) float32 features of a data dir made by ``compute-feats --kind mfcc``:
    with deltas (D = 39), or through ``transform`` (spliced, times its matrix).

    CMVN uses ``cmvn.scp`` per speaker (``utt2spk``) when present. Raises
    :class:`InputError` naming the file for missing or unreadable features.
    """
    data_dir = Path(data_dir)
    scp = data_dir / "feats.scp"
    if not scp.is_file():
        raise InputError("missing feats.scp: run compute-feats --kind mfcc first", data_dir)
    cmvn_stats: dict[str, np.ndarray] = {}
    utt2spk: dict[str, str] = {}
    if (data_dir / "cmvn.scp").is_file():
        cmvn_rx = read_table(data_dir / "cmvn.scp")
        utt2spk = read_table(data_dir / "utt2spk")
        cmvn_stats = {spk: read_mat(rx) for spk, rx in cmvn_rx.items()}
    else:
        log.warning("%s: no cmvn.scp; features are used without CMVN", data_dir)
    out: dict[str, np.ndarray] = {}
    try:
        for utt, mat in read_mat_scp(scp):
            if cmvn_stats:
                spk = utt2spk.get(utt, utt)
                if spk not in cmvn_stats:
                    raise InputError(f"no CMVN stats for speaker {spk!r} of {utt}", scp)
                mat = apply_cmvn(mat, cmvn_stats[spk], norm_vars=norm_vars)
            if transform is not None:
                out[utt] = transform.apply(mat)
            else:
                out[utt] = add_deltas(mat) if deltas else np.ascontiguousarray(mat, np.float32)
    except (OSError, ValueError, EOFError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"cannot read features: {e}", scp) from None
    return out


def global_stats(feats: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance (D,) over all frames (float64 accumulation)."""
    n = 0
    s = s2 = None
    for x in feats.values():
        x64 = x.astype(np.float64)
        s = x64.sum(0) if s is None else s + x64.sum(0)
        s2 = (x64**2).sum(0) if s2 is None else s2 + (x64**2).sum(0)
        n += len(x)
    if not n:
        raise ValueError("no frames")
    mean = s / n
    return mean, np.maximum(s2 / n - mean**2, 1e-10)
