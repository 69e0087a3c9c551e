"""Triphone GMM-HMM training (Kaldi's steps/train_deltas.sh): tree stats from the
previous model's alignments, our phonetic decision tree, one Gaussian per leaf from
the tree stats (gmm-init-model), alignments converted through the new tree
(convert-ali), then EM with realignment and mixing up. ``train-lda-mllt`` does the
same on LDA+MLLT features (steps/train_lda_mllt.sh).

``build-tree`` writes a tree dir: ``tree`` (Kaldi binary ContextDependency),
``tree.txt`` (readable dump), ``tree_stats.npz``, ``questions.txt``; ``train-tri``
builds (or reuses) one and writes a model dir like ``train-mono``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np

from asr_distill.errors import InputError
from asr_distill.hmm.align import AlignOptions, phone_segments, read_alignments
from asr_distill.hmm.context_dep import Tree
from asr_distill.hmm.em import EstimateOptions, accumulate, estimate
from asr_distill.hmm.model import GmmHmm, make_diag_gmm, read_topo_text
from asr_distill.hmm.questions import make_questions, read_questions, read_roots
from asr_distill.hmm.train import TrainingData, _write_curve, load_training_data, run_em
from asr_distill.hmm.transforms import (
    FeatureTransform,
    LdaStats,
    MlltStats,
    accumulate_mllt,
    estimate_lda,
    estimate_mllt,
    splice,
)
from asr_distill.hmm.tree import build_tree, leaf_stats
from asr_distill.hmm.tree_stats import TreeStats, accumulate_tree_stats
from asr_distill.io import atomic_open
from asr_distill.io.step import step_log

log = logging.getLogger(__name__)

TREE_DUMP_FILE = "tree.txt"
TREE_STATS_FILE = "tree_stats.npz"


@dataclasses.dataclass
class TreeConfig:
    """Decision-tree options (Kaldi's build-tree): num_leaves: most leaves before
    post-clustering [2000]; min_count: least frames on each side of a split [100];
    thresh: least likelihood gain of a split [300, Kaldi's]; cluster_thresh for
    post-clustering (-1: the smallest gain of an accepted split, as Kaldi) [-1]."""

    num_leaves: int = 2000
    min_count: float = 100.0
    thresh: float = 300.0
    cluster_thresh: float = -1.0


@dataclasses.dataclass
class TriConfig:
    """Triphone training (defaults of Kaldi's steps/train_deltas.sh; tree options in
    ``tree``): tot_gauss [10000], num_iters [35], max_iter_inc [25], realign_iters
    [10, 20, 30], boost_silence [1.0], beam [10], retry_beam [40], power [0.25], nj [1]
    (the model does not depend on it), seed of the perturbation of split Gaussians [0]."""

    tree: TreeConfig = dataclasses.field(default_factory=TreeConfig)
    tot_gauss: int = 10000
    num_iters: int = 35
    max_iter_inc: int = 25
    realign_iters: list[int] = dataclasses.field(default_factory=lambda: [10, 20, 30])
    boost_silence: float = 1.0
    beam: float = 10.0
    retry_beam: float = 40.0
    power: float = 0.25
    nj: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.tree, dict):  # from YAML
            self.tree = TreeConfig(**self.tree)


def _ci_phones(lang_dir: Path) -> list[int]:
    path = lang_dir / "phones" / "context_indep.int"
    return [int(x) for x in path.read_text().split()] if path.is_file() else []


def make_tree(
    data: TrainingData,
    ali_model: GmmHmm,
    alignments: Mapping[str, np.ndarray],
    config: TreeConfig,
    tree_dir: Path,
) -> tuple[Tree, TreeStats]:
    """acc-tree-stats + cluster-phones + compile-questions + build-tree; writes the
    tree dir's files (atomically)."""
    lang_dir = data.lang.path
    stats = accumulate_tree_stats(
        ali_model.trans_model, alignments, data.feats, ci_phones=_ci_phones(lang_dir)
    )
    log.info("tree stats: %d events over %.0f frames", stats.num_events, stats.counts.sum())
    phones_dir = lang_dir / "phones"
    topo = read_topo_text((lang_dir / "topo").read_text(encoding="utf-8"), lang_dir / "topo")
    num_classes = topo.get_phone_to_num_pdf_classes()
    questions = make_questions(
        stats, read_questions(phones_dir / "sets.int"),
        read_questions(phones_dir / "extra_questions.int"), num_classes,
    )  # fmt: skip
    tree = build_tree(
        stats, read_roots(phones_dir / "roots.int"), questions, num_leaves=config.num_leaves,
        phone2num_pdf_classes=num_classes, min_count=config.min_count, thresh=config.thresh,
        cluster_thresh=config.cluster_thresh,
    )  # fmt: skip
    tree_dir.mkdir(parents=True, exist_ok=True)
    tree.write(tree_dir / "tree")
    phone_names = {i: p for p, i in data.lang.phones.items()}
    with atomic_open(tree_dir / TREE_DUMP_FILE) as f:
        f.write(tree.dump(phone_names))
    with atomic_open(tree_dir / "questions.txt") as f:
        for key, qs in sorted(questions.items()):
            for q in qs:
                f.write(f"{key} " + " ".join(phone_names.get(p, str(p)) for p in q) + "\n")
    stats.save(tree_dir / TREE_STATS_FILE)
    info = tree.build_info
    log.info("tree: %d leaves%s", tree.num_pdfs, f" ({info})" if info else "")
    return tree, stats


def init_from_tree(tree: Tree, stats: TreeStats, topo_text: str) -> GmmHmm:
    """gmm-init-model: a TransitionModel on the tree and one Gaussian per leaf, with the
    leaf's pooled mean and variance from the tree stats."""
    ctx = tree.to_context_dependency()
    topo = read_topo_text(topo_text)
    tm = khg.TransitionModel(ctx_dep=ctx, hmm_topo=topo)
    counts, means, variances = leaf_stats(tree, stats)
    am = khg.AmDiagGmm()
    for p in range(tree.num_pdfs):
        am.add_pdf(make_diag_gmm(np.ones(1), 1.0 / variances[p : p + 1], means[p : p + 1]))
    if (counts == 0).any():
        log.warning("%d leaves have no data; they start from the global Gaussian",
                    int((counts == 0).sum()))  # fmt: skip
    return GmmHmm(ctx, topo_text, tm, am)


def convert_alignments(
    old: GmmHmm, new: GmmHmm, alignments: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """convert-ali: map each frame's transition-id to the new model's, keeping the
    phone, HMM state and transition index; the new pdfs come from the new tree with
    the phone's left and right neighbours in the alignment as context."""
    otm, ntm = old.trans_model, new.trans_model
    n_state2id = ntm.state2id
    tstate_of = {}
    for ts, t in enumerate(ntm.tuples, start=1):
        tstate_of[tuple(t.__getstate__())] = ts  # (phone, hmm_state, fwd pdf, loop pdf)
    o_id2state, o_state2id = otm.id2state, otm.state2id
    o_hmm_state = [t.__getstate__()[1] for t in otm.tuples]
    topo = new.topo
    width, centre = new.ctx_dep.context_width, new.ctx_dep.central_position
    out: dict[str, np.ndarray] = {}
    for utt, tids in alignments.items():
        segs = phone_segments(old, tids)
        phones = [p for p, _, _ in segs]
        new_tids = np.empty_like(tids)
        for i, (phone, start, dur) in enumerate(segs):
            ctx = [
                phones[i + k - centre] if 0 <= i + k - centre < len(phones) else 0
                for k in range(width)
            ]
            entries = topo.topology_for_phone(phone)
            for t in range(start, start + dur):
                tid = int(tids[t])
                ts = o_id2state[tid]
                trans_index = tid - o_state2id[ts]
                hmm_state = o_hmm_state[ts - 1]
                e = entries[hmm_state]
                ok1, fpdf = new.ctx_dep.compute(ctx, e.forward_pdf_class)
                ok2, spdf = new.ctx_dep.compute(ctx, e.self_loop_pdf_class)
                key = (phone, hmm_state, fpdf, spdf)
                if not (ok1 and ok2) or key not in tstate_of:
                    raise ValueError(f"{utt}: cannot convert frame {t} (context {ctx})")
                new_tids[t] = n_state2id[tstate_of[key]] + trans_index
        out[utt] = new_tids
    return out


def convert_ali_dir(
    lang_dir: str | Path, model_dir: str | Path, ali_dir: str | Path, out_dir: str | Path,
    *, force: bool = False,
) -> dict | None:  # fmt: skip
    """Kaldi's ``convert-ali`` as a step: ``ali_dir``'s alignments (made by the model it
    holds) onto ``model_dir``'s tree and transition model, written as an alignment dir
    of that model (its ``pdf.ark`` gives DNN targets with the old alignment's
    boundaries and the new tree's pdfs). The utterances that failed to align stay
    listed in ``failed.txt``. The output is a plain alignment dir: a SAT model's
    speaker transforms and alignment model are not carried over. Returns a summary, or
    None if already done."""
    import shutil

    from asr_distill.data.kaldi_dir import read_table
    from asr_distill.hmm.align import FAILED_FILE, AlignResult, write_alignment_dir
    from asr_distill.hmm.sat import ALI_MODEL_DIR, TRANS_FILE
    from asr_distill.io.atomic import is_done
    from asr_distill.lang.validate import validate_lang

    out_dir, ali_dir = Path(out_dir), Path(ali_dir)
    config = {"lang": str(lang_dir), "model_dir": str(model_dir), "ali_dir": str(ali_dir)}
    with step_log(out_dir, "convert_ali.log", force=force, config=config,
                  clear=(TRANS_FILE,)) as run:  # fmt: skip
        if not run:
            return None
        shutil.rmtree(out_dir / ALI_MODEL_DIR, ignore_errors=True)  # of an earlier SAT use
        if not is_done(ali_dir):
            raise InputError("not a finished alignment dir (no .done): run align first",
                             ali_dir)  # fmt: skip
        old, new = GmmHmm.load(ali_dir), GmmHmm.load(model_dir)
        if old.topo_text.split() != new.topo_text.split():
            raise InputError(f"{ali_dir} has another HMM topology", Path(model_dir) / "topo")
        alignments = read_alignments(ali_dir)
        try:
            converted = convert_alignments(old, new, alignments)
        except (ValueError, IndexError) as e:
            raise InputError(f"cannot convert to {model_dir}'s tree: {e}",
                             ali_dir / "ali.ark") from None  # fmt: skip
        failed = read_table(ali_dir / FAILED_FILE, allow_empty_value=True)
        frames = sum(len(t) for t in converted.values())
        result = AlignResult(converted, failed, 0.0, frames)
        phone_names = {i: p for p, i in validate_lang(lang_dir).phones.items()}
        write_alignment_dir(out_dir, new, result, phone_names)
        summary = {"utterances": len(converted) + len(failed), "aligned": len(converted),
                   "failed": len(failed), "frames": frames, "from_pdfs": old.num_pdfs,
                   "to_pdfs": new.num_pdfs}  # fmt: skip
        log.info("convert-ali %s (%d pdfs) to %s (%d pdfs): %d utterances, %d frames; "
                 "%d failed in the source, still listed", ali_dir, old.num_pdfs, model_dir,
                 new.num_pdfs, len(converted), frames, len(failed))  # fmt: skip
        with atomic_open(out_dir / "summary.yaml") as f:
            f.writelines(f"{k}: {v}\n" for k, v in summary.items())
        return summary


def build_tree_dir(
    data_dir: str | Path,
    lang_dir: str | Path,
    ali_dir: str | Path,
    tree_dir: str | Path,
    config: TreeConfig | None = None,
    *,
    force: bool = False,
) -> Tree | None:
    """The ``build-tree`` step: a tree dir from a data dir and an alignment dir."""
    config = config or TreeConfig()
    tree_dir = Path(tree_dir)
    with step_log(tree_dir, "build-tree.log", force=force, config=config) as run:
        if not run:
            return None
        data = load_training_data(data_dir, lang_dir)
        tree, _ = make_tree(data, GmmHmm.load(ali_dir), read_alignments(ali_dir), config,
                            tree_dir)  # fmt: skip
        return tree


def previous_alignments(ali_dir: str | Path, data: TrainingData) -> tuple[GmmHmm, dict]:
    """The model of ``ali_dir`` and its alignments of the utterances of ``data``."""
    old = GmmHmm.load(ali_dir)
    old_ali = {u: a for u, a in read_alignments(ali_dir).items() if u in data.feats}
    if not old_ali:
        raise InputError("no alignments for the utterances of the data dir", ali_dir)
    log.info("%d utterances, %d with alignments from %s", len(data.feats), len(old_ali),
             ali_dir)  # fmt: skip
    return old, old_ali


def train_on_new_tree(
    data: TrainingData,
    old: GmmHmm,
    old_ali: Mapping[str, np.ndarray],
    config: TriConfig,
    out_dir: Path,
    *,
    transform: FeatureTransform | None = None,
    before_accumulate: Callable[[int, GmmHmm, dict[str, np.ndarray]], None] | None = None,
) -> tuple[GmmHmm, dict[str, np.ndarray], EstimateOptions]:
    """What every triphone trainer shares: a tree from ``old``'s alignments on
    ``data.feats``, one Gaussian per leaf, converted alignments, then EM with
    realignment and mixing up (``before_accumulate`` as :func:`run_em`). Returns the
    model (its feature ``transform`` set), the last alignments and the estimation
    options."""
    tree, stats = make_tree(data, old, old_ali, config.tree, out_dir)
    model = init_from_tree(tree, stats, (data.lang.path / "topo").read_text("utf-8"))
    model.transform = transform
    alignments = convert_alignments(old, model, old_ali)
    est = EstimateOptions(power=config.power, seed=config.seed)
    stats0 = accumulate(model, alignments, data.feats)
    estimate(model, stats0, est, mixup=tree.num_pdfs)
    log.info("iter 0 (converted alignments): avg log-likelihood per frame %.4f over %d "
             "frames; %d pdfs", stats0.like_per_frame, stats0.num_frames,
             model.num_pdfs)  # fmt: skip
    curve = [(0, stats0.like_per_frame, stats0.num_frames, model.num_gauss, 0)]
    _write_curve(out_dir, curve)
    alignments = run_em(
        model, data, alignments, num_iters=config.num_iters,
        realign_iters=config.realign_iters, max_iter_inc=config.max_iter_inc,
        num_gauss=tree.num_pdfs, tot_gauss=config.tot_gauss, estimate_opts=est,
        align_opts=AlignOptions(beam=config.beam, retry_beam=config.retry_beam,
                                boost_silence=config.boost_silence),
        nj=config.nj, out_dir=out_dir, curve=curve, before_accumulate=before_accumulate,
    )  # fmt: skip
    return model, alignments, est


def train_tri(
    data_dir: str | Path,
    lang_dir: str | Path,
    ali_dir: str | Path,
    out_dir: str | Path,
    config: TriConfig | None = None,
    *,
    force: bool = False,
) -> GmmHmm | None:
    """Triphone training on the alignments of ``ali_dir`` (e.g. of the mono model)."""
    config = config or TriConfig()
    out_dir = Path(out_dir)
    with step_log(out_dir, "train.log", force=force, config=config) as run:
        if not run:
            return None
        data = load_training_data(data_dir, lang_dir)
        old, old_ali = previous_alignments(ali_dir, data)
        model, _, _ = train_on_new_tree(data, old, old_ali, config, out_dir)
        model.save(out_dir)
        log.info("train-tri: %d pdfs, %d Gaussians -> %s", model.num_pdfs, model.num_gauss,
                 out_dir)  # fmt: skip
        return model


@dataclasses.dataclass
class LdaMlltConfig(TriConfig):
    """LDA+MLLT triphone training (Kaldi's steps/train_lda_mllt.sh): the triphone
    options, plus dim: LDA output dimension [40]; left_context, right_context: frames
    of CMVN'd MFCC spliced before LDA [3, 3]; mllt_iters: iterations that re-estimate
    MLLT [2, 4, 6, 12]."""

    dim: int = 40
    left_context: int = 3
    right_context: int = 3
    mllt_iters: list[int] = dataclasses.field(default_factory=lambda: [2, 4, 6, 12])


def silence_weights(model: GmmHmm, silence_phones: set[int], weight: float = 0.0) -> np.ndarray:
    """(num_tids + 1,) frame weight by transition-id: ``weight`` for silence phones, else
    1 (Kaldi's ``weight-silence-post``)."""
    tm = model.trans_model
    phone = [0] + [tm.transition_id_to_phone(t) for t in range(1, tm.num_transition_ids + 1)]
    return np.asarray([weight if p in silence_phones else 1.0 for p in phone])


def frames_by_pdf(pdfs: np.ndarray, num_pdfs: int) -> dict[int, np.ndarray]:
    """pdf -> the indices of the frames aligned to it (pdfs with frames only)."""
    order = np.argsort(pdfs, kind="stable")
    bounds = np.searchsorted(pdfs[order], np.arange(num_pdfs + 1))
    return {p: order[bounds[p] : bounds[p + 1]] for p in range(num_pdfs)
            if bounds[p + 1] > bounds[p]}  # fmt: skip


def lda_stats(
    model: GmmHmm, alignments: Mapping[str, np.ndarray], feats: Mapping[str, np.ndarray],
    silence_phones: set[int],
) -> LdaStats:  # fmt: skip
    """acc-lda on spliced features, the classes the aligned pdfs, silence weighted 0."""
    pdf_of = np.asarray(model.trans_model.id2pdf_id, np.int64)
    weight_of = silence_weights(model, silence_phones)
    stats = LdaStats.zeros(model.num_pdfs, next(iter(feats.values())).shape[1])
    for utt, tids in alignments.items():
        stats.accumulate(feats[utt], pdf_of[tids], weight_of[tids])
    return stats


def mllt_stats(
    model: GmmHmm, alignments: Mapping[str, np.ndarray], feats: Mapping[str, np.ndarray],
    silence_phones: set[int],
) -> MlltStats:  # fmt: skip
    """gmm-acc-mllt on the current features and model, silence weighted 0."""
    pdf_of = np.asarray(model.trans_model.id2pdf_id, np.int64)
    weight_of = silence_weights(model, silence_phones)
    utts = sorted(alignments)
    x = np.concatenate([feats[u] for u in utts])
    tids = np.concatenate([alignments[u] for u in utts])
    keep = weight_of[tids] > 0
    x, pdfs = x[keep], pdf_of[tids[keep]]
    frames = {p: (x[idx], np.ones(len(idx)))
              for p, idx in frames_by_pdf(pdfs, model.num_pdfs).items()}  # fmt: skip
    gmms = [model.am.get_pdf(p) for p in range(model.num_pdfs)]
    return accumulate_mllt([np.asarray(g.means, np.float64) for g in gmms],
                           [np.asarray(g.vars, np.float64) for g in gmms],
                           [np.log(np.asarray(g.weights, np.float64)) for g in gmms],
                           frames)  # fmt: skip


def train_lda_mllt(
    data_dir: str | Path,
    lang_dir: str | Path,
    ali_dir: str | Path,
    out_dir: str | Path,
    config: LdaMlltConfig | None = None,
    *,
    force: bool = False,
) -> GmmHmm | None:
    """Kaldi's steps/train_lda_mllt.sh: LDA to ``dim`` dimensions of spliced MFCC frames
    from ``ali_dir``'s pdf alignments, a new tree on those features, then triphone EM
    in which MLLT is re-estimated on ``mllt_iters`` (the model's means and the feature
    transform both move with it). The model dir gets the transform as ``final.mat``
    and ``splice_opts``, so align and decode use the same features."""
    config = config or LdaMlltConfig()
    out_dir = Path(out_dir)
    with step_log(out_dir, "train.log", force=force, config=config) as run:
        if not run:
            return None
        data = load_training_data(data_dir, lang_dir, deltas=False)
        old, old_ali = previous_alignments(ali_dir, data)
        silence = set(data.silence_phones)
        spliced = {u: splice(x, config.left_context, config.right_context)
                   for u, x in data.feats.items()}  # fmt: skip
        lda, eigenvalues = estimate_lda(lda_stats(old, old_ali, spliced, silence), config.dim)
        kept = eigenvalues[: config.dim]
        log.info("LDA: %d -> %d dims; eigenvalues %.3g ... %.3g (dropped: up to %.3g)",
                 lda.shape[1], config.dim, kept[0], kept[-1],
                 eigenvalues[config.dim] if len(eigenvalues) > config.dim else 0.0)  # fmt: skip
        transform = FeatureTransform(lda, config.left_context, config.right_context)
        data.feats = {u: (x @ lda.T).astype(np.float32) for u, x in spliced.items()}
        del spliced

        def mllt(it: int, model: GmmHmm, alignments: dict[str, np.ndarray]) -> None:
            if it not in config.mllt_iters:
                return
            A, gain = estimate_mllt(mllt_stats(model, alignments, data.feats, silence))
            model.transform_means(A)
            transform.matrix = A @ transform.matrix
            data.feats = {u: (x @ A.T).astype(np.float32) for u, x in data.feats.items()}
            log.info("iter %d: MLLT objective gain %.4f per frame", it, gain)

        model, _, _ = train_on_new_tree(data, old, old_ali, config, out_dir, transform=transform,
                                        before_accumulate=mllt)  # fmt: skip
        model.save(out_dir)
        log.info("train-lda-mllt: %d pdfs, %d Gaussians, %d-dim features -> %s",
                 model.num_pdfs, model.num_gauss, model.dim, out_dir)  # fmt: skip
        return model
