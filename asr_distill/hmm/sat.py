"""Speaker-adaptive training with fMLLR (Kaldi's steps/train_sat.sh) and the two passes
that use a SAT model on new data: alignment (steps/align_fmllr.sh) and decoding
(steps/decode_fmllr.sh).

A SAT model dir is a triphone model dir (its ``final.mat`` gives the
speaker-independent LDA+MLLT features) plus ``alimdl/``, the speaker-independent
alignment model of the first pass (Kaldi's ``final.alimdl``: the SAT model's Gaussians
re-estimated on unadapted features), and ``trans.ark``, the training speakers' fMLLR
transforms ``[A b]`` in Kaldi's format (an archive of float matrices keyed by speaker,
as Kaldi's ``trans.*``). An alignment dir made with a SAT model has both too.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from asr_distill.data.kaldi_dir import read_table
from asr_distill.errors import InputError
from asr_distill.hmm.align import AlignOptions, AlignResult, align
from asr_distill.hmm.em import accumulate, estimate
from asr_distill.hmm.model import GmmHmm
from asr_distill.hmm.train import TrainingData, load_training_data
from asr_distill.hmm.transforms import FmllrStats, apply_fmllr, estimate_fmllr, gmm_posteriors
from asr_distill.hmm.triphone import (
    TriConfig,
    frames_by_pdf,
    previous_alignments,
    silence_weights,
    train_on_new_tree,
)
from asr_distill.io import atomic_open
from asr_distill.io.kaldi_ark import KALDI_READ_ERRORS, read_mat_ark, write_ark_entry
from asr_distill.io.step import step_log

log = logging.getLogger(__name__)

TRANS_FILE = "trans.ark"
ALI_MODEL_DIR = "alimdl"


@dataclasses.dataclass
class SatConfig(TriConfig):
    """Speaker-adaptive training (Kaldi's steps/train_sat.sh): the triphone options, plus
    fmllr_iters: iterations that re-estimate every speaker's fMLLR [2, 4, 6, 12];
    silence_weight: weight of silence frames in the fMLLR statistics [0]."""

    fmllr_iters: list[int] = dataclasses.field(default_factory=lambda: [2, 4, 6, 12])
    silence_weight: float = 0.0


def is_sat(model_dir: str | Path) -> bool:
    """Whether a model (or alignment) dir holds a SAT model (with its alignment model)."""
    return (Path(model_dir) / ALI_MODEL_DIR).is_dir()


def read_utt2spk(data_dir: str | Path) -> dict[str, str]:
    path = Path(data_dir) / "utt2spk"
    return read_table(path) if path.is_file() else {}


def write_transforms(path: str | Path, transforms: Mapping[str, np.ndarray]) -> None:
    """Speaker -> (D, D+1) fMLLR transforms as a Kaldi archive of float matrices."""
    with atomic_open(path, "wb", encoding=None) as f:
        for spk in sorted(transforms):
            write_ark_entry(f, path, spk, np.asarray(transforms[spk], np.float32))


def read_transforms(path: str | Path) -> dict[str, np.ndarray]:
    try:
        return {spk: np.asarray(m, np.float64) for spk, m in read_mat_ark(path)}
    except KALDI_READ_ERRORS as e:
        raise InputError(f"not a Kaldi archive of fMLLR matrices: {e}", path) from None


def compose(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Kaldi's compose-transforms --b-is-affine: the transform that applies ``old``, then
    ``new``: A = A_new A_old, b = A_new b_old + b_new."""
    A = new[:, :-1] @ old[:, :-1]
    return np.hstack([A, (new[:, :-1] @ old[:, -1] + new[:, -1])[:, None]])


def adapt(feats: Mapping[str, np.ndarray], transforms: Mapping[str, np.ndarray],
          utt2spk: Mapping[str, str]) -> dict[str, np.ndarray]:  # fmt: skip
    """Each utterance's features through its speaker's transform (none: unchanged)."""
    out = {}
    for utt, x in feats.items():
        W = transforms.get(utt2spk.get(utt, utt))
        out[utt] = x if W is None else apply_fmllr(x, W)
    return out


def estimate_speaker_fmllr(
    model: GmmHmm,
    alignments: Mapping[str, np.ndarray],
    feats: Mapping[str, np.ndarray],
    utt2spk: Mapping[str, str],
    silence_phones: set[int],
    silence_weight: float = 0.0,
) -> dict[str, np.ndarray]:
    """Kaldi's ``ali-to-post | weight-silence-post | gmm-est-fmllr --spk2utt``: one
    fMLLR transform per speaker from the Gaussian posteriors of each frame within its
    aligned pdf (silence frames weighted ``silence_weight``), from [I 0]."""
    pdf_of = np.asarray(model.trans_model.id2pdf_id, np.int64)
    weight_of = silence_weights(model, silence_phones, silence_weight)
    utts = sorted(u for u in alignments if u in feats)
    if not utts:
        return {}
    x = np.concatenate([feats[u] for u in utts]).astype(np.float64)
    tids = np.concatenate([alignments[u] for u in utts])
    weight, pdfs = weight_of[tids], pdf_of[tids]
    precision, scaled_mean = np.zeros_like(x), np.zeros_like(x)
    for p, idx in frames_by_pdf(pdfs, model.num_pdfs).items():
        gmm = model.am.get_pdf(p)
        mu, var = np.asarray(gmm.means, np.float64), np.asarray(gmm.vars, np.float64)
        post = gmm_posteriors(x[idx], mu, var, np.log(np.asarray(gmm.weights, np.float64)))
        post *= weight[idx, None]
        precision[idx] = post @ (1.0 / var)
        scaled_mean[idx] = post @ (mu / var)
    starts = np.cumsum([0] + [len(alignments[u]) for u in utts])
    stats: dict[str, FmllrStats] = {}
    for utt, a, b in zip(utts, starts[:-1], starts[1:], strict=True):
        spk = utt2spk.get(utt, utt)
        acc = stats.setdefault(spk, FmllrStats.zeros(x.shape[1]))
        acc.accumulate_frames(x[a:b], weight[a:b], precision[a:b], scaled_mean[a:b])
    out, gain, frames = {}, 0.0, 0.0
    for spk, acc in stats.items():
        out[spk], spk_gain = estimate_fmllr(acc)
        gain, frames = gain + spk_gain * acc.beta, frames + acc.beta
    log.info("fMLLR for %d speakers: objective gain %.3f per frame over %.0f frames",
             len(out), gain / max(frames, 1.0), frames)  # fmt: skip
    return out


def train_sat(
    data_dir: str | Path,
    lang_dir: str | Path,
    ali_dir: str | Path,
    out_dir: str | Path,
    config: SatConfig | None = None,
    *,
    force: bool = False,
) -> GmmHmm | None:
    """Kaldi's steps/train_sat.sh on ``ali_dir``'s model features (LDA+MLLT, or deltas):
    fMLLR per training speaker (from ``ali_dir``'s ``trans.ark`` when it has one, else
    estimated with its model), a tree on the adapted features, triphone EM in which the
    transforms are re-estimated on ``fmllr_iters`` (composed with the previous ones),
    then the speaker-independent alignment model."""
    config = config or SatConfig()
    out_dir = Path(out_dir)
    with step_log(out_dir, "train.log", force=force, config=config) as run:
        if not run:
            return None
        data = load_training_data(data_dir, lang_dir,
                                  transform=GmmHmm.load(ali_dir).transform)  # fmt: skip
        old, old_ali = previous_alignments(ali_dir, data)
        si_feats = data.feats
        utt2spk = read_utt2spk(data_dir)
        silence = set(data.silence_phones)
        if (Path(ali_dir) / TRANS_FILE).is_file():
            transforms = read_transforms(Path(ali_dir) / TRANS_FILE)
            log.info("fMLLR of %d speakers from %s", len(transforms), ali_dir)
        else:
            transforms = estimate_speaker_fmllr(old, old_ali, si_feats, utt2spk, silence,
                                                config.silence_weight)  # fmt: skip
        data.feats = adapt(si_feats, transforms, utt2spk)

        def refit_fmllr(it: int, model: GmmHmm, alignments: dict[str, np.ndarray]) -> None:
            nonlocal transforms
            if it not in config.fmllr_iters:
                return
            delta = estimate_speaker_fmllr(model, alignments, data.feats, utt2spk, silence,
                                           config.silence_weight)  # fmt: skip
            transforms = {s: compose(delta[s], W) if s in delta else W
                          for s, W in transforms.items()}  # fmt: skip
            data.feats = adapt(si_feats, transforms, utt2spk)

        model, alignments, est = train_on_new_tree(
            data, old, old_ali, config, out_dir, transform=old.transform,
            before_accumulate=refit_fmllr,
        )  # fmt: skip
        # The alignment model: the SAT model's posteriors on the adapted features, its
        # statistics on the speaker-independent ones (gmm-acc-stats-twofeats).
        alimdl = model.copy()
        si_stats = accumulate(model, alignments, data.feats, stats_feats=si_feats)
        estimate(alimdl, si_stats, est)
        model.save(out_dir)
        alimdl.save(out_dir / ALI_MODEL_DIR)
        write_transforms(out_dir / TRANS_FILE, transforms)
        log.info("train-sat: %d pdfs, %d Gaussians, %d speakers' fMLLR -> %s",
                 model.num_pdfs, model.num_gauss, len(transforms), out_dir)  # fmt: skip
        return model


def align_fmllr(
    model_dir: str | Path, data: TrainingData, opts: AlignOptions, nj: int,
    utt2spk: Mapping[str, str],
) -> tuple[AlignResult, dict[str, np.ndarray]]:  # fmt: skip
    """Kaldi's steps/align_fmllr.sh: align ``data`` (speaker-independent features) with
    the alignment model, estimate each speaker's fMLLR with the SAT model on those
    alignments, then align again with the SAT model on the adapted features (``data``'s
    features are replaced by them). Returns the second alignment and the transforms."""
    model, alimdl = GmmHmm.load(model_dir), GmmHmm.load(Path(model_dir) / ALI_MODEL_DIR)
    first = align(alimdl, data.lang.path, data.feats, data.word_ids, opts,
                  silence_phones=data.silence_phones, nj=nj)  # fmt: skip
    transforms = estimate_speaker_fmllr(model, first.alignments, data.feats, utt2spk,
                                        set(data.silence_phones))  # fmt: skip
    data.feats = adapt(data.feats, transforms, utt2spk)
    second = align(model, data.lang.path, data.feats, data.word_ids, opts,
                   silence_phones=data.silence_phones, nj=nj)  # fmt: skip
    return second, transforms
