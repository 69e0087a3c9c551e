"""A GMM-HMM acoustic model: context dependency (tree), HMM topology, transition
model and diagonal GMMs, with Kaldi's objects from kaldi-hmm-gmm inside.

On disk (a model dir such as ``exp/mono`` or ``exp/tri1``), nothing is pickled:

- ``tree``      the ContextDependency in Kaldi's binary format (``\\0B`` header), as
  Kaldi's own ``tree`` files
- ``topo``      the HMM topology, Kaldi's text format
- ``final.gmm.safetensors``  transition log-probabilities and, per pdf, the GMM's
  weights, inverse variances and means times inverse variances (Kaldi's natural
  parameters), with the per-pdf Gaussian offsets
- ``final.mat``, ``splice_opts``  only for LDA+MLLT features: the feature transform, in
  Kaldi's formats (see :class:`asr_distill.hmm.feats.FeatureTransform`)

Loading rebuilds the TransitionModel from (tree, topo) and restores its
log-probabilities, then rebuilds each DiagGmm from its arrays.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np
from safetensors.numpy import load_file, save_file

from asr_distill.errors import InputError
from asr_distill.hmm.transforms import MATRIX_FILE, FeatureTransform
from asr_distill.io import atomic_open, atomic_path

TREE_FILE = "tree"
TOPO_FILE = "topo"
GMM_FILE = "final.gmm.safetensors"
_BINARY_HEADER = b"\0B"


def ctx_dep_to_bytes(ctx_dep: khg.ContextDependency) -> bytes:
    """Kaldi's binary ContextDependency bytes (without the ``\\0B`` file header)."""
    (state,) = ctx_dep.__getstate__()
    return bytes(b % 256 for b in state)


def ctx_dep_from_bytes(data: bytes) -> khg.ContextDependency:
    """A ContextDependency from Kaldi's binary bytes (with or without the header)."""
    if data.startswith(_BINARY_HEADER):
        data = data[len(_BINARY_HEADER) :]
    ctx = khg.ContextDependency.__new__(khg.ContextDependency)
    ctx.__setstate__(([b - 256 if b > 127 else b for b in data],))
    return ctx


def read_topo_text(text: str, path: str | Path | None = None) -> khg.HmmTopology:
    topo = khg.HmmTopology()
    try:
        topo.read(text)
        topo.check()
    except RuntimeError as e:
        raise InputError(f"cannot parse HMM topology: {e}", path) from None
    return topo


@dataclasses.dataclass
class GmmHmm:
    """Tree + topology + transition model + GMMs, as Kaldi's ``final.mdl`` and ``tree``."""

    ctx_dep: khg.ContextDependency
    topo_text: str
    trans_model: khg.TransitionModel
    am: khg.AmDiagGmm
    transform: FeatureTransform | None = None  # None: MFCC + deltas

    @property
    def num_pdfs(self) -> int:
        return self.am.num_pdfs

    @property
    def num_gauss(self) -> int:
        return self.am.num_gauss

    @property
    def dim(self) -> int:
        return self.am.dim

    @property
    def topo(self) -> khg.HmmTopology:
        return self.trans_model.topo

    def copy(self) -> GmmHmm:
        am = khg.AmDiagGmm()
        am.copy_from_am_diag_gmm(self.am)
        tm = khg.TransitionModel.__new__(khg.TransitionModel)
        tm.__setstate__(self.trans_model.__getstate__())
        transform = dataclasses.replace(self.transform) if self.transform else None
        return GmmHmm(self.ctx_dep, self.topo_text, tm, am, transform)

    def transform_means(self, A: np.ndarray) -> None:
        """Kaldi's gmm-transform-means: every Gaussian mean mu becomes A mu (variances
        kept), for features that are now A x."""
        A32 = np.asarray(A, np.float32)
        for p in range(self.am.num_pdfs):
            gmm = self.am.get_pdf(p)
            gmm.set_means(np.ascontiguousarray(np.asarray(gmm.means, np.float32) @ A32.T))
            gmm.compute_gconsts()

    def pdf_log_likelihoods(self, feats: np.ndarray, tables: tuple | None = None) -> np.ndarray:
        """(T, D) features -> (T, num_pdfs) float32 GMM log-likelihoods of every pdf
        (Kaldi's ``DiagGmm::LogLikelihoods`` + log-sum-exp, for all pdfs at once, as a
        lattice search needs them; ``DecodableAmDiagGmmScaled`` computes them one by
        one). ``tables``: :meth:`gauss_tables`, computed once for many calls."""
        gconsts, means_invvars, inv_vars, offsets = tables or self.gauss_tables()
        x = np.asarray(feats, np.float64)
        ll = gconsts + x @ means_invvars.T - 0.5 * (x * x) @ inv_vars.T  # (T, G)
        peak = np.maximum.reduceat(ll, offsets[:-1], axis=1)  # (T, P)
        sizes = np.diff(offsets)
        sums = np.add.reduceat(np.exp(ll - np.repeat(peak, sizes, axis=1)), offsets[:-1], axis=1)
        return (peak + np.log(sums)).astype(np.float32)

    def gauss_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every Gaussian's gconst, mean x inverse variance, inverse variance, and the
        pdfs' Gaussian offsets (P + 1,), for :meth:`pdf_log_likelihoods`."""
        gconsts, means_invvars, inv_vars, offsets = [], [], [], [0]
        for p in range(self.am.num_pdfs):
            gmm = self.am.get_pdf(p)
            gconsts.append(np.asarray(gmm.gconsts, np.float64))
            means_invvars.append(np.asarray(gmm.means_invvars, np.float64))
            inv_vars.append(np.asarray(gmm.inv_vars, np.float64))
            offsets.append(offsets[-1] + gmm.num_gauss)
        return (np.concatenate(gconsts), np.concatenate(means_invvars),
                np.concatenate(inv_vars), np.asarray(offsets, np.int64))  # fmt: skip

    def save(self, model_dir: str | Path) -> None:
        """Write ``tree``, ``topo`` and ``final.gmm.safetensors`` atomically."""
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(model_dir / TREE_FILE, "wb", encoding=None) as f:
            f.write(_BINARY_HEADER + ctx_dep_to_bytes(self.ctx_dep))
        with atomic_open(model_dir / TOPO_FILE) as f:
            f.write(self.topo_text)
        arrays = {"transition_log_probs": np.asarray(self.trans_model.log_probs, np.float32)}
        weights, inv_vars, means_invvars, offsets = [], [], [], [0]
        for p in range(self.am.num_pdfs):
            gmm = self.am.get_pdf(p)
            weights.append(np.asarray(gmm.weights, np.float32))
            inv_vars.append(np.asarray(gmm.inv_vars, np.float32))
            means_invvars.append(np.asarray(gmm.means_invvars, np.float32))
            offsets.append(offsets[-1] + gmm.num_gauss)
        arrays["gauss_offsets"] = np.asarray(offsets, np.int64)  # (P+1,)
        arrays["weights"] = np.concatenate(weights)  # (G,)
        arrays["inv_vars"] = np.concatenate(inv_vars)  # (G, D)
        arrays["means_invvars"] = np.concatenate(means_invvars)  # (G, D)
        with atomic_path(model_dir / GMM_FILE) as tmp:
            save_file(arrays, str(tmp))
        if self.transform is not None:
            self.transform.save(model_dir)
        else:  # a dir reused for another model must not keep a stale transform
            (model_dir / MATRIX_FILE).unlink(missing_ok=True)

    @classmethod
    def load(cls, model_dir: str | Path) -> GmmHmm:
        model_dir = Path(model_dir)
        for name in (TREE_FILE, TOPO_FILE, GMM_FILE):
            if not (model_dir / name).is_file():
                raise InputError(f"missing {name}: not a finished GMM-HMM model dir", model_dir)
        try:
            ctx = ctx_dep_from_bytes((model_dir / TREE_FILE).read_bytes())
        except RuntimeError as e:  # Kaldi's reader: "[E] Expected token ...", "read failure"
            why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise InputError(f"not a Kaldi tree (truncated or another file): {why}",
                             model_dir / TREE_FILE) from None  # fmt: skip
        topo_text = (model_dir / TOPO_FILE).read_text(encoding="utf-8")
        topo = read_topo_text(topo_text, model_dir / TOPO_FILE)
        try:
            arrays = load_file(str(model_dir / GMM_FILE))
        except Exception as e:  # safetensors raises its own error types
            raise InputError(f"cannot read: {e}", model_dir / GMM_FILE) from None
        tm = with_transition_log_probs(
            khg.TransitionModel(ctx_dep=ctx, hmm_topo=topo), arrays["transition_log_probs"]
        )
        am = khg.AmDiagGmm()
        off = arrays["gauss_offsets"]
        for p in range(len(off) - 1):
            s, e = int(off[p]), int(off[p + 1])
            am.add_pdf(
                make_diag_gmm(
                    arrays["weights"][s:e],
                    arrays["inv_vars"][s:e],
                    arrays["means_invvars"][s:e] / arrays["inv_vars"][s:e],
                )
            )
        if am.num_pdfs != tm.num_pdfs:
            raise InputError(
                f"{am.num_pdfs} GMMs but the tree has {tm.num_pdfs} pdfs", model_dir / GMM_FILE
            )
        transform = FeatureTransform.load(model_dir)
        if transform is not None and transform.matrix.shape[0] != am.dim:
            raise InputError(f"{transform.matrix.shape[0]}-dim transform for {am.dim}-dim "
                             "GMMs", model_dir / MATRIX_FILE)  # fmt: skip
        return cls(ctx, topo_text, tm, am, transform)


def make_diag_gmm(weights: np.ndarray, inv_vars: np.ndarray, means: np.ndarray) -> khg.DiagGmm:
    """A DiagGmm from weights (G,), inverse variances (G, D) and means (G, D)."""
    gmm = khg.DiagGmm(nmix=len(weights), dim=means.shape[1])
    gmm.set_weights(np.asarray(weights, np.float32))
    gmm.set_invvars_and_means(np.asarray(inv_vars, np.float32), np.asarray(means, np.float32))
    gmm.compute_gconsts()
    return gmm


def with_transition_log_probs(
    tm: khg.TransitionModel, log_probs: np.ndarray
) -> khg.TransitionModel:
    """A copy of ``tm`` with these log-probabilities (index 0 unused, as in Kaldi) and
    the derived non-self-loop log-probabilities of each transition state recomputed.

    (pybind11's ``__setstate__`` only works on a fresh ``__new__`` instance; on a
    constructed one it is silently ignored.)"""
    state = list(tm.__getstate__())
    if len(log_probs) != len(state[6]):
        raise ValueError(f"{len(log_probs)} transition log-probs, model has {len(state[6])}")
    log_probs = [float(x) for x in log_probs]
    non_self_loop = [0.0] * len(state[7])
    for tstate in range(1, tm.num_transition_states + 1):
        for tid in range(tm.state2id[tstate], tm.state2id[tstate + 1]):
            if tm.is_self_loop(tid):
                p = math.exp(log_probs[tid])
                non_self_loop[tstate] = math.log(1.0 - p) if p < 1.0 else -1e10
    state[6], state[7] = log_probs, non_self_loop
    out = khg.TransitionModel.__new__(khg.TransitionModel)
    out.__setstate__(tuple(state))
    return out


def init_mono(
    topo_text: str,
    feats_mean: np.ndarray,
    feats_var: np.ndarray,
    shared_phones: Sequence[Sequence[int]] | None = None,
) -> GmmHmm:
    """A flat monophone model (Kaldi's gmm-init-mono): every pdf one Gaussian with the
    global mean and variance of the features. ``shared_phones`` lists phone groups that
    share pdfs (Kaldi's ``phones/sets.int`` with ``--shared-phones``)."""
    topo = read_topo_text(topo_text)
    num_classes = topo.get_phone_to_num_pdf_classes()
    if shared_phones:
        ctx = khg.monophone_context_dependency_shared(
            phone_classes=[sorted(s) for s in shared_phones], phone2num_pdf_classes=num_classes
        )
    else:
        ctx = khg.monophone_context_dependency(
            phones=list(topo.phones), phone2num_pdf_classes=num_classes
        )
    tm = khg.TransitionModel(ctx_dep=ctx, hmm_topo=topo)
    gmm = make_diag_gmm(np.ones(1), (1.0 / feats_var)[None], feats_mean[None])
    am = khg.AmDiagGmm()
    for _ in range(ctx.num_pdfs):
        am.add_pdf(gmm)
    return GmmHmm(ctx, topo_text, tm, am)


def boost_silence(model: GmmHmm, silence_phones: Sequence[int], boost: float) -> khg.AmDiagGmm:
    """A copy of the GMMs with the weights of silence pdfs multiplied by ``boost``
    (Kaldi's gmm-boost-silence, used only for alignment)."""
    am = khg.AmDiagGmm()
    am.copy_from_am_diag_gmm(model.am)
    if boost == 1.0:
        return am
    _, pdfs = khg.get_pdfs_for_phones(model.trans_model, sorted(silence_phones))
    for pdf in pdfs:
        gmm = am.get_pdf(pdf)
        gmm.set_weights(np.asarray(gmm.weights, np.float32) * boost)
        gmm.compute_gconsts()
    return am
