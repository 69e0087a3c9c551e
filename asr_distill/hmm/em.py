"""One EM pass of a GMM-HMM on fixed alignments: Kaldi's gmm-acc-stats-ali + gmm-est
(transition and GMM maximum-likelihood updates, then mixing up by occupancy), with
kaldi-hmm-gmm's accumulators and update functions.

Mixing up is ours (Kaldi's GetSplitTargets and DiagGmm::Split, in numpy): the split
in kaldi-hmm-gmm draws its mean perturbation from ``std::random_device``, so two runs
of the same training diverged from the first split on. Ours draws from a generator
seeded by (seed, iteration), so a training run is reproducible.
"""

from __future__ import annotations

import dataclasses
import heapq
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
    transition floor [0.01] and min count [5]; seed of the mean perturbation of split
    Gaussians [0]."""

    min_gaussian_occupancy: float = 10.0
    min_gaussian_weight: float = 1e-5
    min_variance: float = 0.001
    power: float = 0.25
    perturb_factor: float = 0.01
    min_count: float = 20.0
    transition_floor: float = 0.01
    transition_min_count: float = 5.0
    seed: int = 0


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
    model: GmmHmm,
    alignments: Mapping[str, np.ndarray],
    feats: Mapping[str, np.ndarray],
    stats_feats: Mapping[str, np.ndarray] | None = None,
) -> Stats:
    """gmm-acc-stats-ali: per frame, the aligned pdf's GMM gets the frame weighted by
    its Gaussian posteriors; transition-ids are counted. Utterances without features
    are skipped (the caller lists them). With ``stats_feats`` (Kaldi's
    gmm-acc-stats-twofeats), the posteriors come from ``feats`` and the statistics
    from ``stats_feats`` (a SAT model's speaker-independent alignment model)."""
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
        if stats_feats is not None:
            for frame, frame2, pdf in zip(x, stats_feats[utt], pdf_of[tids].tolist(), strict=True):
                tot_like += acc.accumulate_for_gmm_two_feats(am, frame, frame2, pdf, 1.0)
            frames += len(tids)
            continue
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


def split_targets(occs: np.ndarray, target: int, power: float, min_count: float) -> np.ndarray:
    """Kaldi's GetSplitTargets: Gaussians per pdf (at least one each) for ``target`` in
    all, given to the pdf with the largest occupancy^power per Gaussian one at a time;
    a pdf stops growing once another Gaussian would leave it under ``min_count``
    frames each. Ties go to the lower pdf index. occs (P,) -> (P,) int64."""
    occs = np.asarray(occs, np.float64)
    scores = occs**power
    counts = np.ones(len(occs), np.int64)
    heap = [(-float(s), p) for p, s in enumerate(scores)]
    heapq.heapify(heap)
    total = len(occs)
    while total < target and heap and heap[0][0] < 0.0:
        _, p = heapq.heappop(heap)
        if (counts[p] + 1) * min_count >= occs[p]:
            continue  # min-count reached: this pdf splits no more
        counts[p] += 1
        total += 1
        heapq.heappush(heap, (-float(scores[p]) / counts[p], p))
    if total < target:
        log.warning("could not split up to %d Gaussians (min count %g): %d", target,
                    min_count, total)  # fmt: skip
    return counts


def split_gmm(gmm: khg.DiagGmm, target: int, perturb_factor: float, rng: np.random.Generator):
    """Kaldi's DiagGmm::Split, in place: until the GMM has ``target`` components, halve
    the heaviest one (lowest index on ties) into two whose means move apart by
    +-perturb_factor standard deviations times a standard normal draw from ``rng``."""
    weights = np.asarray(gmm.weights, np.float32)  # (G,)
    inv_vars = np.asarray(gmm.inv_vars, np.float32)  # (G, D)
    means_invvars = np.asarray(gmm.means_invvars, np.float32)  # (G, D)
    num, dim = inv_vars.shape
    if target <= num:
        return
    weights = np.concatenate([weights, np.zeros(target - num, np.float32)])
    inv_vars = np.concatenate([inv_vars, np.zeros((target - num, dim), np.float32)])
    means_invvars = np.concatenate([means_invvars, np.zeros((target - num, dim), np.float32)])
    for new in range(num, target):
        j = int(np.argmax(weights[:new]))
        weights[j] /= 2
        weights[new] = weights[j]
        # means_invvars has the units of an inverse standard deviation, so its
        # perturbation scales with sqrt(inv_var), as Kaldi's.
        delta = (perturb_factor * rng.standard_normal(dim) * np.sqrt(inv_vars[j])).astype(
            np.float32
        )  # (D,)
        inv_vars[new] = inv_vars[j]
        means_invvars[new] = means_invvars[j] + delta
        means_invvars[j] -= delta
    gmm.resize(target, dim)
    gmm.set_weights(weights)
    gmm.set_invvars_and_means(inv_vars, means_invvars / inv_vars)
    gmm.compute_gconsts()


def split_by_count(
    am: khg.AmDiagGmm,
    occs: np.ndarray,
    target: int,
    *,
    perturb_factor: float,
    power: float,
    min_count: float,
    rng: np.random.Generator,
) -> None:
    """Kaldi's AmDiagGmm::SplitByCount with a seeded generator: split each pdf's GMM
    up to its :func:`split_targets` count, pdfs in index order."""
    before = am.num_gauss
    counts = split_targets(occs, target, power, min_count)
    for pdf, count in enumerate(counts.tolist()):
        gmm = am.get_pdf(pdf)
        if gmm.num_gauss < count:
            split_gmm(gmm, count, perturb_factor, rng)
    log.debug("split %d pdfs towards %d Gaussians: %d -> %d", len(counts), target, before,
              am.num_gauss)  # fmt: skip


def estimate(
    model: GmmHmm, stats: Stats, opts: EstimateOptions, *, mixup: int = 0, iteration: int = 0
) -> None:
    """gmm-est: update transitions and GMMs in place; then, if ``mixup`` exceeds the
    current Gaussian count, split Gaussians up to ``mixup`` in proportion to
    occupancy^power (perturbations drawn from a generator seeded by (opts.seed,
    iteration))."""
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
        split_by_count(
            model.am,
            occs,
            mixup,
            perturb_factor=opts.perturb_factor,
            power=opts.power,
            min_count=opts.min_count,
            rng=np.random.default_rng([opts.seed, iteration]),
        )
    model.am.compute_gconsts()
