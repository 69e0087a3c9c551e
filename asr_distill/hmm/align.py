"""Forced alignment of a GMM-HMM (Kaldi's compile-train-graphs + gmm-align-compiled,
align-equal-compiled) and alignment directories (``ali-to-pdf``, ``ali-to-phones``).

Training graphs come from kaldi-hmm-gmm's TrainingGraphCompiler over the lang dir's
``L.fst``; alignment uses its Viterbi aligner (``align_utterance_wrapper``) on
``DecodableAmDiagGmmScaled``. The decoder holds the GIL, so ``nj > 1`` aligns in
forked worker processes, each on a contiguous share of the utterances.

An alignment dir holds:

- ``ali.ark``       transition-ids per frame (Kaldi int-vector ark, read with kaldi-io)
- ``pdf.ark``       pdf-ids per frame (``ali-to-pdf``): the DNN targets
- ``phones.ctm``    ``utt 1 start dur phone`` per phone (``ali-to-phones --ctm-output``)
- ``failed.txt``    utterances that did not align (with the reason); never dropped silently
- ``pdf_counts``    frames per pdf (priors for hybrid decoding); ``num_pdfs``
- the model (``tree``, ``topo``, ``final.gmm.safetensors``) that aligned
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing
from collections.abc import Mapping, Sequence
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from asr_distill.data.kaldi_dir import read_table
from asr_distill.errors import InputError
from asr_distill.hmm.model import GmmHmm
from asr_distill.io import atomic_open
from asr_distill.io.kaldi_ark import read_vec_int_ark, write_ark_entry
from asr_distill.lang.validate import LangDir, read_fst

log = logging.getLogger(__name__)

ALI_FILE = "ali.ark"
PDF_ALI_FILE = "pdf.ark"
PHONE_CTM_FILE = "phones.ctm"
FAILED_FILE = "failed.txt"
PDF_COUNTS_FILE = "pdf_counts"
NUM_PDFS_FILE = "num_pdfs"


@dataclasses.dataclass
class AlignOptions:
    """Viterbi alignment options (Kaldi's defaults in steps/align_si.sh).

    beam: alignment beam [10]; retry_beam: beam of a second try when the first
    fails [40]; acoustic_scale [0.1], transition_scale [1.0] and self_loop_scale
    [0.1] as Kaldi's ``scale_opts``; boost_silence: factor on silence GMM weights
    during alignment [1.0].
    """

    beam: float = 10.0
    retry_beam: float = 40.0
    acoustic_scale: float = 0.1
    transition_scale: float = 1.0
    self_loop_scale: float = 0.1
    boost_silence: float = 1.0
    careful: bool = False


@dataclasses.dataclass
class AlignResult:
    alignments: dict[str, np.ndarray]  # utt -> (T,) int32 transition-ids
    failed: dict[str, str]  # utt -> reason
    tot_like: float  # total (unscaled-by-frames) log-likelihood of aligned utts
    num_frames: int


def transcripts_to_ids(
    text: Mapping[str, str | Sequence[str]], lang: LangDir, path: str | Path | None = None
) -> tuple[dict[str, list[int]], int]:
    """Word-id sequences of transcripts (words not in words.txt -> the OOV word), and
    the number of OOV tokens mapped."""
    out: dict[str, list[int]] = {}
    num_oov = 0
    for utt, words in text.items():
        seq = words.split() if isinstance(words, str) else list(words)
        ids = []
        for w in seq:
            i = lang.words.get(w)
            if i is None:
                num_oov += 1
                i = lang.oov_id
            ids.append(i)
        if not ids:
            raise InputError(f"empty transcript for {utt}", path)
        out[utt] = ids
    return out, num_oov


# ------------------------------------------------------------------- worker side

# Set in the parent before forking; read by the workers (copy-on-write).
_STATE: dict = {}


def _graph_compiler(model: GmmHmm, lang_dir: Path) -> khg.TrainingGraphCompiler:
    lex = read_fst(lang_dir / "L.fst")
    kaldifst.arcsort(lex, sort_type="olabel")
    disambig = [int(x) for x in (lang_dir / "phones" / "disambig.int").read_text().split()]
    return khg.TrainingGraphCompiler(
        trans_model=model.trans_model,
        ctx_dep=model.ctx_dep,
        lex_fst=lex,
        disambig_syms=disambig,
        # As Kaldi's compile-train-graphs: no transition probabilities in the graph; the
        # aligner adds the current model's (add_transition_probs) at its own scales.
        opts=khg.TrainingGraphCompilerOptions(transition_scale=0.0, self_loop_scale=0.0),
    )


def _align_chunk(utts: Sequence[str]) -> list[tuple[str, np.ndarray | None, float, str]]:
    """Align ``utts`` with the state in ``_STATE``: (utt, tids or None, loglike, reason)."""
    st = _STATE
    model: GmmHmm = st["model"]
    opts: AlignOptions = st["opts"]
    compiler = _graph_compiler(model, st["lang_dir"])
    out = []
    for utt in utts:
        feats = st["feats"][utt]
        graph = compiler.compile_graph_from_text(st["word_ids"][utt])
        if st["equal"]:
            ok, afst = kaldifst.equal_align(
                ifst=graph, length=len(feats), rand_seed=3, num_retries=10
            )
            if not ok:
                out.append((utt, None, 0.0, "equal-align failed (too few frames?)"))
                continue
            ok, tids, _, _ = kaldifst.get_linear_symbol_sequence(afst)
            out.append((utt, np.asarray(tids, np.int32), 0.0, ""))
            continue
        khg.add_transition_probs(
            trans_model=model.trans_model,
            transition_scale=opts.transition_scale,
            self_loop_scale=opts.self_loop_scale,
            fst=graph,
        )
        decodable = khg.DecodableAmDiagGmmScaled(
            am=st["align_am"], tm=model.trans_model, feats=feats, scale=opts.acoustic_scale
        )
        cfg = khg.AlignConfig(beam=opts.beam, retry_beam=opts.retry_beam, careful=opts.careful)
        _, num_err, _, like, _, tids, _ = khg.align_utterance_wrapper(
            config=cfg,
            utt=utt,
            acoustic_scale=opts.acoustic_scale,
            fst=graph,
            decodable=decodable,
            num_done=0,
            num_error=0,
            num_retried=0,
            tot_like=0.0,
            frame_count=0,
        )
        if num_err or len(tids) != len(feats):
            out.append((utt, None, 0.0, f"no alignment within retry beam {opts.retry_beam}"))
        else:
            # The wrapper returns the unscaled log-likelihood (Kaldi divides by the scale).
            out.append((utt, np.asarray(tids, np.int32), like, ""))
    return out


def align(
    model: GmmHmm,
    lang_dir: str | Path,
    feats: Mapping[str, np.ndarray],
    word_ids: Mapping[str, Sequence[int]],
    opts: AlignOptions | None = None,
    *,
    silence_phones: Sequence[int] = (),
    equal: bool = False,
    nj: int = 1,
) -> AlignResult:
    """Align every utterance of ``word_ids`` (features in ``feats``); ``equal`` gives
    Kaldi's flat-start equal alignment instead of Viterbi."""
    opts = opts or AlignOptions()
    utts = [u for u in word_ids if u in feats]
    failed = {u: "no features" for u in word_ids if u not in feats}
    align_am = model.am
    if not equal and opts.boost_silence != 1.0 and silence_phones:
        from asr_distill.hmm.model import boost_silence

        align_am = boost_silence(model, silence_phones, opts.boost_silence)
    _STATE.update(
        model=model,
        align_am=align_am,
        opts=opts,
        lang_dir=Path(lang_dir),
        feats=feats,
        word_ids=word_ids,
        equal=equal,
    )
    try:
        if nj <= 1 or len(utts) < 2 * nj:
            results = _align_chunk(utts)
        else:
            bounds = np.linspace(0, len(utts), nj * 4 + 1).astype(int)
            chunks = [utts[a:b] for a, b in itertools.pairwise(bounds) if b > a]
            with multiprocessing.get_context("fork").Pool(nj) as pool:
                results = [r for part in pool.map(_align_chunk, chunks) for r in part]
    finally:
        _STATE.clear()
    alignments: dict[str, np.ndarray] = {}
    tot_like, frames = 0.0, 0
    for utt, tids, like, reason in results:
        if tids is None:
            failed[utt] = reason
        else:
            alignments[utt] = tids
            tot_like += like
            frames += len(tids)
    return AlignResult(alignments, failed, tot_like, frames)


# ------------------------------------------------------------------- alignment dirs


def tids_to_pdfs(model: GmmHmm, tids: np.ndarray) -> np.ndarray:
    """ali-to-pdf: transition-ids (T,) -> pdf-ids (T,)."""
    table = np.asarray(model.trans_model.id2pdf_id, np.int32)  # (num_tids + 1,)
    return table[tids]


def phone_segments(model: GmmHmm, tids: np.ndarray) -> list[tuple[int, int, int]]:
    """ali-to-phones: (phone, start frame, num frames) of each phone instance."""
    from asr_distill.hmm.tree_stats import split_to_phones

    return split_to_phones(model.trans_model, tids)


def write_alignment_dir(
    ali_dir: str | Path,
    model: GmmHmm,
    result: AlignResult,
    phone_names: Mapping[int, str],
    *,
    frame_shift_s: float = 0.01,
) -> None:
    """Write ``ali.ark``, ``pdf.ark``, ``phones.ctm``, ``failed.txt``, ``pdf_counts``,
    ``num_pdfs`` and the model into ``ali_dir`` (each file atomically), in sorted
    utterance order."""
    ali_dir = Path(ali_dir)
    ali_dir.mkdir(parents=True, exist_ok=True)
    counts = np.zeros(model.num_pdfs, np.int64)
    utts = sorted(result.alignments)
    with (
        atomic_open(ali_dir / ALI_FILE, "wb", encoding=None) as fa,
        atomic_open(ali_dir / PDF_ALI_FILE, "wb", encoding=None) as fp,
    ):
        for utt in utts:
            tids = result.alignments[utt]
            pdfs = tids_to_pdfs(model, tids)
            counts += np.bincount(pdfs, minlength=model.num_pdfs)
            write_ark_entry(fa, ali_dir / ALI_FILE, utt, tids.astype(np.int32))
            write_ark_entry(fp, ali_dir / PDF_ALI_FILE, utt, pdfs.astype(np.int32))
    with atomic_open(ali_dir / PHONE_CTM_FILE) as f:
        for utt in utts:
            for phone, start, dur in phone_segments(model, result.alignments[utt]):
                f.write(
                    f"{utt} 1 {start * frame_shift_s:.2f} {dur * frame_shift_s:.2f} "
                    f"{phone_names.get(phone, phone)}\n"
                )
    with atomic_open(ali_dir / FAILED_FILE) as f:
        f.writelines(f"{utt} {reason}\n" for utt, reason in sorted(result.failed.items()))
    with atomic_open(ali_dir / PDF_COUNTS_FILE) as f:
        f.write(" ".join(map(str, counts.tolist())) + "\n")
    with atomic_open(ali_dir / NUM_PDFS_FILE) as f:
        f.write(f"{model.num_pdfs}\n")
    model.save(ali_dir)


def read_alignments(ali_dir: str | Path, name: str = ALI_FILE) -> dict[str, np.ndarray]:
    """utt -> int32 array from an alignment dir's ``ali.ark`` (or ``pdf.ark``)."""
    path = Path(ali_dir) / name
    if not path.is_file():
        raise InputError("missing: not a finished alignment dir", path)
    return {utt: np.asarray(v, np.int32) for utt, v in read_vec_int_ark(path)}


def read_text(data_dir: str | Path) -> dict[str, str]:
    return read_table(Path(data_dir) / "text", allow_empty_value=True)
