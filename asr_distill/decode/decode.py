"""WFST decoding of a data dir with HCLG, from a GMM-HMM or from any frame
log-likelihoods over pdfs, such as a hybrid DNN's.

By default each utterance is searched once, into a lattice
(:mod:`asr_distill.decode.lattice`), and the sweep of Kaldi's score.sh (every LM
weight x word insertion penalty) takes best paths from the lattices without searching
again. With ``lattice: false`` the search is kaldi-hmm-gmm's LatticeFasterDecoder,
which returns the one-best path only: one search per LM weight (acoustic scale
1/LMWT), ``DecodableAmDiagGmmScaled`` for a GMM, ``DecodableCtc`` for log-likelihoods;
the fMLLR first pass of a SAT model uses it too (it needs the best path's
transition-ids). ``nj > 1`` decodes in forked worker processes.

A decode dir holds ``hyp.<LMWT>.txt`` (Kaldi ``text`` format) for each LM weight at
penalty 0 and ``hyp.<LMWT>_<WIP>.txt`` at penalty WIP, the lattices ``lat.<N>.gz`` (a
text archive of Kaldi CompactLattices per worker chunk, determinized; state-level
Lattices with ``determinize: false``) with ``words.txt``, ``config.yaml``,
``summary.yaml``, ``log/decode.log`` (real-time factor) and ``.done``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import kaldi_hmm_gmm as khg
import numpy as np

from asr_distill.decode.config import DecodeConfig
from asr_distill.decode.determinize import determinize_lattice
from asr_distill.decode.lattice import LatticeOptions, decode_lattice, read_graph, write_lattices
from asr_distill.decode.score import hyp_file
from asr_distill.errors import InputError
from asr_distill.hmm import sat
from asr_distill.hmm.model import GmmHmm
from asr_distill.io import atomic_open, atomic_path
from asr_distill.io.step import step_log
from asr_distill.lang.validate import read_fst

log = logging.getLogger(__name__)

FRAME_SHIFT_S = 0.01


def read_symbols(path: str | Path) -> dict[int, str]:
    out: dict[int, str] = {}
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise InputError("expected 'symbol id'", path, lineno)
        out[int(fields[1])] = fields[0]
    return out


def pdf_loglikes_to_tid_columns(model: GmmHmm, pdf_loglikes: np.ndarray) -> np.ndarray:
    """(T, num_pdfs) -> (T, num_tids): column ``tid - 1`` holds the log-likelihood of
    ``pdf(tid)``, the layout ``DecodableCtc`` reads (it has no bounds check)."""
    pdf_of = np.asarray(model.trans_model.id2pdf_id[1:], np.int64)  # (num_tids,)
    if pdf_loglikes.shape[1] != model.num_pdfs:
        raise ValueError(f"{pdf_loglikes.shape[1]} log-likelihood columns, {model.num_pdfs} pdfs")
    return np.ascontiguousarray(pdf_loglikes[:, pdf_of], np.float32)


# Set in the parent before forking.
_STATE: dict = {}


def _one_torch_thread() -> None:
    """A worker computes on one core. Torch is loaded only where the parent scores with a
    DNN (decode --dnn); a GMM decode never imports it (its import costs more than a small
    decode)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


Result = tuple[str, float, float, "list[int] | None", int, "np.ndarray | None"]


def _decode_chunk(job: tuple[int, Sequence[str]]) -> list[Result]:
    """(utt, lmwt, penalty, word ids or None, frames, the best path's transition-ids or
    None) for each utterance and scoring setting of chunk ``job = (n, utts)``."""
    _one_torch_thread()
    if _STATE["config"].lattice and not _STATE["alignments"]:
        return _lattice_chunk(*job)
    st = _STATE
    cfg: DecodeConfig = st["config"]
    model: GmmHmm = st["model"]
    graph = st["graph"]  # read once by the parent: forked workers share it
    dcfg = khg.LatticeFasterDecoderConfig(
        beam=cfg.beam, lattice_beam=cfg.lattice_beam, max_active=cfg.max_active,
        min_active=cfg.min_active,
    )  # fmt: skip
    out = []
    for utt in job[1]:
        source = st["source"](utt)  # (T, D) features or (T, num_pdfs) log-likelihoods
        for lmwt in cfg.lmwts:
            # A fresh decoder for every pass: a reused one keeps the hash size that
            # earlier utterances grew, which changes how ties are broken, so a result
            # would depend on the chunking (nj) and on the other LM weights decoded.
            decoder = khg.LatticeFasterDecoder(graph, dcfg)
            scale = 1.0 / lmwt
            if st["kind"] == "gmm":
                decodable = khg.DecodableAmDiagGmmScaled(
                    am=model.am, tm=model.trans_model, feats=source, scale=scale
                )
            else:
                decodable = khg.DecodableCtc(pdf_loglikes_to_tid_columns(model, source * scale))
            ok, tids, words, _ = khg.decode_utterance_lattice_faster(
                decoder=decoder, decodable=decodable, trans_model=model.trans_model, utt=utt,
                allow_partial=cfg.allow_partial,
            )  # fmt: skip
            ali = np.asarray(tids, np.int32) if ok and st["alignments"] else None
            out.append((utt, lmwt, 0.0, list(words) if ok else None, len(source), ali))
    return out


def _lattice_chunk(n: int, utts: Sequence[str]) -> list[Result]:
    """One lattice search per utterance, the best path of every (LM weight, penalty)
    from it, and the chunk's lattices written to ``lat.<n>.gz``."""
    st = _STATE
    cfg: DecodeConfig = st["config"]
    model: GmmHmm = st["model"]
    opts = LatticeOptions(
        beam=cfg.beam, max_active=cfg.max_active, min_active=cfg.min_active,
        lattice_beam=cfg.lattice_beam, allow_partial=cfg.allow_partial,
    )  # fmt: skip
    acscale = 1.0 / cfg.lattice_lmwt()
    out, lattices = [], []
    for utt in utts:
        source = st["source"](utt)
        if st["kind"] == "gmm":
            source = model.pdf_log_likelihoods(source, st["gauss_tables"])
        lat, _ = decode_lattice(st["lattice_graph"], pdf_loglikes_to_tid_columns(model, source),
                                acscale, opts)  # fmt: skip
        if cfg.determinize:
            clat, det_beam = determinize_lattice(lat, acscale, cfg.lattice_beam)
            if det_beam < cfg.lattice_beam:  # as Kaldi warns: max-mem reached
                log.warning("%s: lattice determinized at beam %.2f, not %g (its size)", utt,
                            det_beam, cfg.lattice_beam)  # fmt: skip
            lattices.append((utt, clat))
            lat = clat.to_lattice()
        else:
            lattices.append((utt, lat))
        for lmwt, wip in cfg.settings():
            out.append((utt, lmwt, wip, lat.best_path(lmwt, wip), len(source), None))
    if st["lattice_dir"] is not None:
        with atomic_path(st["lattice_dir"] / f"lat.{n}.gz") as tmp:
            write_lattices(tmp, lattices)
    return out


def decode(
    graph_dir: str | Path,
    model: GmmHmm,
    utts: Sequence[str],
    source: Callable[[str], np.ndarray],
    config: DecodeConfig,
    *,
    kind: str = "gmm",
    nj: int = 1,
    alignments: dict[str, np.ndarray] | None = None,
    lattice_dir: Path | None = None,
) -> dict[tuple[float, float], dict[str, list[str] | None]]:
    """Decode ``utts``: ``source(utt)`` gives GMM features (``kind='gmm'``) or
    (T, num_pdfs) log-likelihoods (``kind='loglikes'``). Returns, per (LM weight, word
    insertion penalty) of ``config.settings()``, utt -> words (None where decoding
    failed). With one LM weight, ``alignments`` (a dict) receives each decoded
    utterance's best-path transition-ids (a first pass for fMLLR; a one-best search).
    Lattice searches write their lattices into ``lattice_dir`` when given."""
    graph_dir = Path(graph_dir)
    graph = graph_dir / "HCLG.fst"
    if not graph.is_file():
        raise InputError("missing HCLG.fst: run mkgraph first", graph_dir)
    words = read_symbols(graph_dir / "words.txt")
    if alignments is not None and len(config.lmwts) != 1:
        raise ValueError("alignments come from a decode at one LM weight")
    lattice = config.lattice and alignments is None
    if lattice_dir is not None:
        for old in Path(lattice_dir).glob("lat.*.gz"):  # from an earlier, killed run
            old.unlink()
    # Read before forking: each worker shares the parent's graph (copy-on-write) instead
    # of reading its own copy for every chunk (0.5 s for the small preset's HCLG).
    _STATE.update(
        config=config, model=model, source=source, kind=kind,
        alignments=alignments is not None, lattice_dir=lattice_dir,
        graph=None if lattice else read_fst(graph),
        lattice_graph=read_graph(graph) if lattice else None,
        gauss_tables=model.gauss_tables() if lattice and kind == "gmm" else None,
    )  # fmt: skip
    try:
        if nj <= 1 or len(utts) < 2 * nj:
            results = _decode_chunk((1, list(utts)))
        else:
            bounds = np.linspace(0, len(utts), nj * 4 + 1).astype(int)
            chunks = [list(utts[a:b]) for a, b in itertools.pairwise(bounds) if b > a]
            with multiprocessing.get_context("fork").Pool(nj) as pool:
                parts = pool.map(_decode_chunk, list(enumerate(chunks, 1)))
            results = [r for part in parts for r in part]
    finally:
        _STATE.clear()
    settings = config.settings() if lattice else [(w, 0.0) for w in config.lmwts]
    out: dict[tuple[float, float], dict[str, list[str] | None]] = {s: {} for s in settings}
    for utt, lmwt, wip, ids, _, ali in results:
        out[lmwt, wip][utt] = None if ids is None else [words.get(i, f"<{i}>") for i in ids]
        if alignments is not None and ali is not None:
            alignments[utt] = ali
    return out


def decode_data_dir(
    graph_dir: str | Path,
    model_dir: str | Path,
    data_dir: str | Path,
    decode_dir: str | Path,
    config: DecodeConfig | None = None,
    *,
    nj: int = 1,
    force: bool = False,
) -> dict | None:
    """The ``decode`` step with a GMM-HMM: decode ``data_dir`` (MFCC + CMVN, then deltas
    or the model's LDA+MLLT transform) with ``graph_dir/HCLG.fst`` into ``decode_dir``."""
    from asr_distill.hmm.feats import load_gmm_features

    config = config or DecodeConfig()
    decode_dir = Path(decode_dir)
    with step_log(decode_dir, "decode.log", force=force, config=config) as run:
        if not run:
            return None
        model = GmmHmm.load(model_dir)
        feats = load_gmm_features(data_dir, transform=model.transform)
        utts = sorted(feats)
        start = time.perf_counter()
        if sat.is_sat(model_dir):  # Kaldi's decode_fmllr.sh
            feats = _fmllr_first_pass(graph_dir, model_dir, model, feats, data_dir, config, nj)
        hyps = decode(graph_dir, model, utts, feats.__getitem__, config, kind="gmm", nj=nj,
                      lattice_dir=decode_dir)  # fmt: skip
        return write_decode_dir(decode_dir, hyps, feats, time.perf_counter() - start, nj,
                                graph_dir)  # fmt: skip


def _fmllr_first_pass(
    graph_dir: str | Path, model_dir: str | Path, model: GmmHmm,
    feats: dict[str, np.ndarray], data_dir: str | Path, config: DecodeConfig, nj: int,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Decode with the SAT model's speaker-independent alignment model at
    ``first_pass_lmwt``, estimate each speaker's fMLLR with the SAT model from the best
    paths (silence weighted ``fmllr_silence_weight``) and return the adapted features."""
    alimdl = GmmHmm.load(Path(model_dir) / sat.ALI_MODEL_DIR)
    first = dataclasses.replace(config, lmwts=[config.first_pass_lmwt])
    alignments: dict[str, np.ndarray] = {}
    decode(graph_dir, alimdl, sorted(feats), feats.__getitem__, first, nj=nj,
           alignments=alignments)  # fmt: skip
    csl = Path(graph_dir) / "phones" / "silence.csl"
    silence = {int(p) for p in csl.read_text().strip().split(":")} if csl.is_file() else set()
    utt2spk = sat.read_utt2spk(data_dir)
    transforms = sat.estimate_speaker_fmllr(model, alignments, feats, utt2spk, silence,
                                            config.fmllr_silence_weight)  # fmt: skip
    log.info("first pass: %d of %d utterances decoded; fMLLR for %d speakers",
             len(alignments), len(feats), len(transforms))  # fmt: skip
    return sat.adapt(feats, transforms, utt2spk)


def write_decode_dir(
    decode_dir: Path,
    hyps: Mapping[tuple[float, float], Mapping[str, list[str] | None]],
    frames: Mapping[str, np.ndarray],
    seconds: float,
    nj: int,
    graph_dir: str | Path,
) -> dict:
    """Write ``hyp.<LMWT>[_<WIP>].txt`` files, ``words.txt`` (the lattices' word ids)
    and the summary; log failures and the RTF."""
    num_frames = sum(len(x) for x in frames.values())
    audio_s = num_frames * FRAME_SHIFT_S
    lattice = any(decode_dir.glob("lat.*.gz"))
    passes = 1 if lattice else len({w for w, _ in hyps})
    # Real-time factor per search, in CPU-seconds per second of audio.
    rtf = seconds * nj / max(audio_s, 1e-9) / max(passes, 1)
    failed = set()
    for (lmwt, wip), by_utt in hyps.items():
        with atomic_open(decode_dir / hyp_file(lmwt, wip)) as f:
            for utt in sorted(by_utt):
                words = by_utt[utt]
                if words is None:
                    failed.add(utt)
                    words = []
                f.write(f"{utt} {' '.join(words)}".rstrip() + "\n")
    if lattice:
        with atomic_open(decode_dir / "words.txt") as f:
            f.write((Path(graph_dir) / "words.txt").read_text(encoding="utf-8"))
    summary = {
        "utterances": len(frames), "audio_seconds": round(audio_s, 2),
        "wall_seconds": round(seconds, 2), "lmwts": sorted({w for w, _ in hyps}),
        "word_ins_penalties": sorted({p for _, p in hyps}), "lattices": lattice,
        "searches_per_utterance": passes, "nj": nj, "real_time_factor": round(rtf, 4),
        "failed": sorted(failed),
    }  # fmt: skip
    log.info(
        "decoded %d utterances (%.1f s of audio), %d search(es) each, %d scoring setting(s), "
        "in %.1f s with %d job(s): real-time factor %.3f per search (CPU-seconds per second "
        "of audio); %d failed",
        len(frames), audio_s, passes, len(hyps), seconds, nj, rtf, len(failed),
    )  # fmt: skip
    with atomic_open(decode_dir / "summary.yaml") as f:
        import yaml

        yaml.safe_dump(summary, f, sort_keys=False)
    return summary
