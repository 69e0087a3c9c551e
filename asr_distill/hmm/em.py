"""One EM pass of a GMM-HMM on fixed alignments: Kaldi's gmm-acc-stats-ali + gmm-est
(transition and GMM maximum-likelihood updates, then mixing up by occupancy), with
kaldi-hmm-gmm's accumulators and update functions."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import kaldi_hmm_gmm as khg
import numpy as np

from asr_distill.hmm.model import GmmHmm

log = logging.getLogger(__name__)


@dataclasses.dataclass
class EstimateOptions:
    """gmm-est options: min_gaussian_occupancy [10; Kaldi's train_mono uses 3],
    power: exponent of the pdf occupancy that allots Gaussians when mixing up [0.25],
    perturb_factor for split means [0.01], min_count per Gaussian when mixing up [20],
    transition floor [0.01] and min count [5]."""

    min_gaussian_occupancy: float = 10.0
    min_gaussian_weight: float = 1e-5
    min_variance: float = 0.001
    power: float = 0.25
    perturb_factor: float = 0.01
    min_count: float = 20.0
    transition_floor: float = 0.01
    transition_min_count: float = 5.0


@dataclasses.dataclass
class Stats:
    """Accumulated statistics of one pass."""

    gmm: khg.AccumAmDiagGmm
    transitions: np.ndarray  # (num_tids + 1,) float64 counts
    tot_like: float
    num_frames: int

    @property
    def like_per_frame(self) -> float:
        return self.tot_like / max(self.num_frames, 1)


def accumulate(
    model: GmmHmm, alignments: Mapping[str, np.ndarray], feats: Mapping[str, np.ndarray]
) -> Stats:
    """gmm-acc-stats-ali: per frame, the aligned pdf's GMM gets the frame weighted by
    its Gaussian posteriors; transition-ids are counted. Utterances without features
    are skipped (the caller lists them)."""
    acc = khg.AccumAmDiagGmm()
    acc.init(model=model.am, flags=int(khg.GmmUpdateFlags.kGmmAll))
    pdf_of = np.asarray(model.trans_model.id2pdf_id, np.int64)  # (num_tids + 1,)
    trans = np.zeros(model.trans_model.num_transition_ids + 1, np.float64)
    tot_like, frames = 0.0, 0
    add = acc.accumulate_for_gmm
    am = model.am
    for utt, tids in alignments.items():
        x = feats.get(utt)
        if x is None:
            continue
        if len(x) != len(tids):
            raise ValueError(f"{utt}: {len(tids)} aligned frames but {len(x)} feature frames")
        trans += np.bincount(tids, minlength=len(trans))
        for frame, pdf in zip(x, pdf_of[tids].tolist(), strict=True):
            tot_like += add(am, frame, pdf, 1.0)
        frames += len(tids)
    return Stats(acc, trans, tot_like, frames)


def acoustic_log_likelihood(
    model: GmmHmm, alignments: Mapping[str, np.ndarray], feats: Mapping[str, np.ndarray]
) -> tuple[float, int]:
    """Total GMM log-likelihood of the frames under their aligned pdfs, and the number
    of frames (transition probabilities not included): how well a model fits data,
    comparable across models (e.g. mono vs tri1 on held-out data)."""
    pdf_of = np.asarray(model.trans_model.id2pdf_id, np.int64)
    like = model.am.log_likelihood
    total, frames = 0.0, 0
    for utt, tids in alignments.items():
        for frame, pdf in zip(feats[utt], pdf_of[tids].tolist(), strict=True):
            total += like(pdf, frame)
        frames += len(tids)
    return total, frames


def estimate(model: GmmHmm, stats: Stats, opts: EstimateOptions, *, mixup: int = 0) -> None:
    """gmm-est: update transitions and GMMs in place; then, if ``mixup`` exceeds the
    current Gaussian count, split Gaussians up to ``mixup`` in proportion to
    occupancy^power."""
    tcfg = khg.MleTransitionUpdateConfig(
        floor=opts.transition_floor, mincount=opts.transition_min_count
    )
    t_impr, t_count = model.trans_model.mle_update(stats.transitions, tcfg)
    gcfg = khg.MleDiagGmmOptions(
        min_gaussian_weight=opts.min_gaussian_weight,
        min_gaussian_occupancy=opts.min_gaussian_occupancy,
        min_variance=opts.min_variance,
        remove_low_count_gaussians=True,
    )
    g_impr, g_count = khg.mle_am_diag_gmm_update(
        config=gcfg,
        amdiag_gmm_acc=stats.gmm,
        flags=int(khg.GmmUpdateFlags.kGmmAll),
        am_gmm=model.am,
    )
    log.debug(
        "transition update %.4f/frame over %.0f frames; GMM update %.4f/frame over %.0f",
        t_impr / max(t_count, 1),
        t_count,
        g_impr / max(g_count, 1),
        g_count,
    )
    if mixup > model.am.num_gauss:
        occs = np.array(
            [stats.gmm.get_acc(p).occupancy.sum() for p in range(stats.gmm.num_accs)],
            np.float32,
        )
        model.am.split_by_count(
            state_occs=occs,
            target_components=mixup,
            perturb_factor=opts.perturb_factor,
            power=opts.power,
            min_count=opts.min_count,
        )
    model.am.compute_gconsts()
