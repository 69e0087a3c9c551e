"""GMM-HMM training recipes: Kaldi's steps/train_mono.sh (flat start) and the EM loop
with realignment and mixing up shared with triphone training (steps/train_deltas.sh).

Each trainer writes a model dir: the model (see :mod:`asr_distill.hmm.model`),
``config.yaml``, ``log/train.log`` with the average log-likelihood per frame of every
iteration, ``train_curve.tsv`` and a ``.done`` marker. Outputs are written
atomically; a killed run leaves no ``.done`` and is redone from the start.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from asr_distill.errors import InputError
from asr_distill.hmm.align import AlignOptions, align, read_text, transcripts_to_ids
from asr_distill.hmm.em import (
    EstimateOptions,
    accumulate,
    acoustic_log_likelihood,
    estimate,
)
from asr_distill.hmm.feats import global_stats, load_gmm_features
from asr_distill.hmm.model import GmmHmm, init_mono
from asr_distill.hmm.transforms import FeatureTransform
from asr_distill.io import atomic_open
from asr_distill.io.step import step_log
from asr_distill.lang.validate import LangDir, validate_lang

log = logging.getLogger(__name__)

KALDI_MONO_REALIGN_ITERS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 23, 26, 29, 32,
                            35, 38]  # fmt: skip
CURVE_FILE = "train_curve.tsv"


@dataclasses.dataclass
class MonoConfig:
    """Monophone training (defaults of Kaldi's steps/train_mono.sh).

    num_iters [40]; max_iter_inc: last iteration that adds Gaussians [30];
    tot_gauss: target Gaussian count [1000]; realign_iters [1..10, 12, ..., 38];
    boost_silence [1.0]; first_beam: beam of the first realignment [6], beam [10],
    retry_beam [40]; power [0.25]; min_gaussian_occupancy [3]; num_shortest: train on
    this many shortest utterances (0 = all) [0]; nj: alignment processes [1] (the
    model does not depend on it); seed: of the perturbation of split Gaussians [0].
    """

    num_iters: int = 40
    max_iter_inc: int = 30
    tot_gauss: int = 1000
    realign_iters: list[int] = dataclasses.field(
        default_factory=lambda: list(KALDI_MONO_REALIGN_ITERS)
    )
    boost_silence: float = 1.0
    first_beam: float = 6.0
    beam: float = 10.0
    retry_beam: float = 40.0
    power: float = 0.25
    min_gaussian_occupancy: float = 3.0
    num_shortest: int = 0
    nj: int = 1
    seed: int = 0


@dataclasses.dataclass
class TrainingData:
    """What a GMM trainer reads: features, word ids, the lang dir."""

    feats: dict[str, np.ndarray]
    word_ids: dict[str, list[int]]
    lang: LangDir

    @property
    def silence_phones(self) -> list[int]:
        return [self.lang.phones[p] for p in self.lang.silence]


def load_training_data(
    data_dir: str | Path,
    lang_dir: str | Path,
    *,
    transform: FeatureTransform | None = None,
    deltas: bool = True,
) -> TrainingData:
    """Features (MFCC + CMVN, then deltas or ``transform``; neither with
    ``deltas=False``) and word ids of a data dir; the checked lang dir. Utterances with
    features but no transcript (or the reverse) are an error naming the data dir's
    file."""
    data_dir = Path(data_dir)
    lang = validate_lang(lang_dir)
    feats = load_gmm_features(data_dir, transform=transform, deltas=deltas)
    text = read_text(data_dir)
    missing = sorted(set(text) - set(feats))
    if missing:
        raise InputError(
            f"{len(missing)} utterance(s) have a transcript but no features (first: {missing[0]})",
            data_dir / "feats.scp",
        )
    word_ids, num_oov = transcripts_to_ids(text, lang, data_dir / "text")
    if num_oov:
        log.info(
            "%s: %d transcript token(s) not in words.txt mapped to %s",
            data_dir,
            num_oov,
            lang.oov_word,
        )
    feats = {u: x for u, x in feats.items() if u in word_ids}
    return TrainingData(feats, word_ids, lang)


def _write_curve(out_dir: Path, rows: Sequence[tuple]) -> None:
    with atomic_open(out_dir / CURVE_FILE) as f:
        f.write("iter\tlike_per_frame\tframes\tnum_gauss\tnum_failed\n")
        for it, like, frames, gauss, failed in rows:
            f.write(f"{it}\t{like:.4f}\t{frames}\t{gauss}\t{failed}\n")


def run_em(
    model: GmmHmm,
    data: TrainingData,
    alignments: dict[str, np.ndarray],
    *,
    num_iters: int,
    realign_iters: Sequence[int],
    max_iter_inc: int,
    num_gauss: int,
    tot_gauss: int,
    estimate_opts: EstimateOptions,
    align_opts: AlignOptions,
    first_beam: float | None = None,
    nj: int = 1,
    out_dir: Path,
    curve: list[tuple],
    before_accumulate: Callable[[int, GmmHmm, dict[str, np.ndarray]], None] | None = None,
) -> dict[str, np.ndarray]:
    """Iterations 1 .. num_iters-1 of Kaldi's GMM training loop: realign on
    ``realign_iters``, call ``before_accumulate(iteration, model, alignments)`` (which may
    change the model and ``data.feats``, as an MLLT update does), accumulate,
    estimate, mix up towards ``tot_gauss`` (by equal increments until
    ``max_iter_inc``). Returns the last alignments."""
    inc = max((tot_gauss - num_gauss) // max(max_iter_inc, 1), 0)
    failed: dict[str, str] = {}
    for it in range(1, num_iters):
        if it in realign_iters:
            opts = dataclasses.replace(align_opts)
            if first_beam is not None and it == min(realign_iters):
                opts.beam = first_beam
            result = _align_training_data(model, data, opts, nj)
            alignments, failed = result.alignments, result.failed
        if before_accumulate is not None:
            before_accumulate(it, model, alignments)
        stats = accumulate(model, alignments, data.feats)
        estimate(model, stats, estimate_opts, mixup=num_gauss, iteration=it)
        log.info(
            "iter %d: avg log-likelihood per frame %.4f over %d frames; %d Gaussians; "
            "%d utterance(s) failed to align",
            it,
            stats.like_per_frame,
            stats.num_frames,
            model.num_gauss,
            len(failed),
        )
        curve.append((it, stats.like_per_frame, stats.num_frames, model.num_gauss, len(failed)))
        _write_curve(out_dir, curve)
        if it <= max_iter_inc:
            num_gauss += inc
    return alignments


def shortest(feats: Mapping[str, np.ndarray], n: int) -> set[str]:
    """The ``n`` utterances with the fewest frames (ties by id)."""
    return set(sorted(feats, key=lambda u: (len(feats[u]), u))[:n])


def train_mono(
    data_dir: str | Path,
    lang_dir: str | Path,
    out_dir: str | Path,
    config: MonoConfig | None = None,
    *,
    force: bool = False,
) -> GmmHmm | None:
    """Flat-start monophone training (Kaldi's train_mono.sh); returns the model, or
    None if ``out_dir`` is already finished and not ``force``."""
    config = config or MonoConfig()
    out_dir = Path(out_dir)
    with step_log(out_dir, "train.log", force=force, config=config) as run:
        if not run:
            return None
        data = load_training_data(data_dir, lang_dir)
        if config.num_shortest:
            keep = shortest(data.feats, config.num_shortest)
            data = TrainingData(
                {u: x for u, x in data.feats.items() if u in keep},
                {u: w for u, w in data.word_ids.items() if u in keep},
                data.lang,
            )
        log.info(
            "train-mono: %d utterances, %d frames",
            len(data.feats),
            sum(len(x) for x in data.feats.values()),
        )
        mean, var = global_stats(data.feats)
        topo_text = (Path(lang_dir) / "topo").read_text(encoding="utf-8")
        sets_path = Path(lang_dir) / "phones" / "sets.int"
        shared = [
            [int(x) for x in line.split()]
            for line in sets_path.read_text().splitlines()
            if line.strip()
        ]
        model = init_mono(topo_text, mean, var, shared_phones=shared)
        log.info("initial model: %d pdfs, %d Gaussians", model.num_pdfs, model.num_gauss)
        eq = align(model, lang_dir, data.feats, data.word_ids, equal=True, nj=config.nj)
        if eq.failed:
            log.warning(
                "equal alignment failed for %d utterance(s), e.g. %s",
                len(eq.failed),
                next(iter(eq.failed.items())),
            )
        num_gauss = model.num_gauss
        est = EstimateOptions(
            min_gaussian_occupancy=config.min_gaussian_occupancy,
            power=config.power,
            seed=config.seed,
        )
        stats = accumulate(model, eq.alignments, data.feats)
        estimate(model, stats, est, mixup=num_gauss)
        log.info(
            "iter 0 (equal alignment): avg log-likelihood per frame %.4f over %d frames",
            stats.like_per_frame,
            stats.num_frames,
        )
        curve = [(0, stats.like_per_frame, stats.num_frames, model.num_gauss, len(eq.failed))]
        run_em(
            model,
            data,
            eq.alignments,
            num_iters=config.num_iters,
            realign_iters=config.realign_iters,
            max_iter_inc=config.max_iter_inc,
            num_gauss=num_gauss,
            tot_gauss=config.tot_gauss,
            estimate_opts=est,
            align_opts=AlignOptions(
                beam=config.beam, retry_beam=config.retry_beam, boost_silence=config.boost_silence
            ),
            first_beam=config.first_beam,
            nj=config.nj,
            out_dir=out_dir,
            curve=curve,
        )
        model.save(out_dir)
        log.info(
            "train-mono: %d pdfs, %d Gaussians -> %s", model.num_pdfs, model.num_gauss, out_dir
        )
        return model


def _align_training_data(model: GmmHmm, data: TrainingData, opts: AlignOptions, nj: int):
    """Viterbi-align every utterance of ``data`` with ``model`` (``nj`` processes)."""
    return align(model, data.lang.path, data.feats, data.word_ids, opts,
                 silence_phones=data.silence_phones, nj=nj)  # fmt: skip


def align_data_dir(
    data_dir: str | Path,
    lang_dir: str | Path,
    model_dir: str | Path,
    ali_dir: str | Path,
    opts: AlignOptions | None = None,
    *,
    nj: int = 1,
    force: bool = False,
) -> dict | None:
    """Kaldi's steps/align_si.sh (steps/align_fmllr.sh for a SAT model dir, see
    :mod:`asr_distill.hmm.sat`): align a data dir with a model dir's GMM-HMM into an
    alignment dir (see :mod:`asr_distill.hmm.align`). Failed utterances are listed in
    ``failed.txt`` and counted in the log. Returns a summary, or None if already done."""
    from asr_distill.hmm import sat
    from asr_distill.hmm.align import write_alignment_dir

    opts = opts or AlignOptions()
    ali_dir = Path(ali_dir)
    with step_log(ali_dir, "align.log", force=force, config=opts) as run:
        if not run:
            return None
        model = GmmHmm.load(model_dir)
        data = load_training_data(data_dir, lang_dir, transform=model.transform)
        if sat.is_sat(model_dir):  # two passes with fMLLR, as Kaldi's align_fmllr.sh
            result, transforms = sat.align_fmllr(model_dir, data, opts, nj,
                                                 sat.read_utt2spk(data_dir))  # fmt: skip
        else:
            result = _align_training_data(model, data, opts, nj)
        phone_names = {i: p for p, i in data.lang.phones.items()}
        write_alignment_dir(ali_dir, model, result, phone_names)
        if sat.is_sat(model_dir):  # the next step (train-sat, a SAT decode) needs both
            sat.write_transforms(ali_dir / sat.TRANS_FILE, transforms)
            GmmHmm.load(Path(model_dir) / sat.ALI_MODEL_DIR).save(ali_dir / sat.ALI_MODEL_DIR)
        num = len(data.word_ids)
        acoustic, frames = acoustic_log_likelihood(model, result.alignments, data.feats)
        summary = {
            "utterances": num,
            "aligned": len(result.alignments),
            "failed": len(result.failed),
            "frames": frames,
            "acoustic_like_per_frame": round(acoustic / max(frames, 1), 4),
            "viterbi_like_per_frame": round(result.tot_like / max(frames, 1), 4),
        }
        log.info(
            "align %s with %s: %d of %d utterances aligned (%.2f%%), %d failed (listed in "
            "%s); acoustic log-likelihood per frame %.4f over %d frames",
            data_dir, model_dir, summary["aligned"], num, 100.0 * summary["aligned"] / num,
            summary["failed"], ali_dir / "failed.txt", summary["acoustic_like_per_frame"],
            frames,
        )  # fmt: skip
        with atomic_open(ali_dir / "summary.yaml") as f:
            f.writelines(f"{k}: {v}\n" for k, v in summary.items())
        return summary
