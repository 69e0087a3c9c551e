"""Scoring: WER of a decode dir with jiwer (Kaldi's score.sh: one WER per LM weight,
the best on dev applied unchanged to test) and frame accuracy against pdf alignments.

``score`` writes into the decode dir ``wer.<LMWT>`` (``%WER x [ errors / words, ins,
del, sub ]`` as Kaldi's compute-wer), ``best_wer``, ``per_utt.<LMWT>`` (reference,
hypothesis and error counts per utterance) and ``scores.yaml``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

import jiwer
import numpy as np

from asr_distill.data.kaldi_dir import read_table
from asr_distill.errors import InputError
from asr_distill.io import atomic_open

log = logging.getLogger(__name__)


def hyp_file(lmwt: float) -> str:
    """A decode dir's hypotheses at LM weight ``lmwt`` (written by decode)."""
    return f"hyp.{lmwt:g}.txt"


@dataclasses.dataclass
class WerResult:
    """Word error counts of one hypothesis set."""

    lmwt: float
    words: int
    substitutions: int
    deletions: int
    insertions: int
    utterances: int
    sentence_errors: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return 100.0 * self.errors / max(self.words, 1)

    def kaldi_line(self) -> str:
        return (
            f"%WER {self.wer:.2f} [ {self.errors} / {self.words}, {self.insertions} ins, "
            f"{self.deletions} del, {self.substitutions} sub ]"
        )


def _words(text: str) -> list[str]:
    return text.split()


def compute_wer(
    refs: Mapping[str, str], hyps: Mapping[str, str], lmwt: float = 0.0
) -> tuple[WerResult, list[tuple[str, str, str, int, int, int, int]]]:
    """WER of ``hyps`` against ``refs`` (every reference utterance must have a
    hypothesis, possibly empty). Returns the totals and, per utterance, (utt, ref,
    hyp, substitutions, deletions, insertions, reference words)."""
    missing = sorted(set(refs) - set(hyps))
    if missing:
        raise ValueError(f"{len(missing)} utterance(s) have no hypothesis (first: {missing[0]})")
    rows = []
    s = d = i = n = sent = 0
    for utt in sorted(refs):
        ref, hyp = _words(refs[utt]), _words(hyps[utt])
        if ref:
            out = jiwer.process_words(" ".join(ref), " ".join(hyp) if hyp else "")
            us, ud, ui = out.substitutions, out.deletions, out.insertions
        else:
            us, ud, ui = 0, 0, len(hyp)
        s, d, i, n = s + us, d + ud, i + ui, n + len(ref)
        sent += int(us + ud + ui > 0)
        rows.append((utt, " ".join(ref), " ".join(hyp), us, ud, ui, len(ref)))
    return WerResult(lmwt, n, s, d, i, len(refs), sent), rows


def read_hyps(path: str | Path) -> dict[str, str]:
    return read_table(path, allow_empty_value=True)


def score_decode_dir(
    decode_dir: str | Path, data_dir: str | Path, *, lmwt: float | None = None
) -> WerResult:
    """Score every ``hyp.<LMWT>.txt`` of ``decode_dir`` against ``data_dir/text``; with
    ``lmwt`` (chosen on dev) report that weight's WER instead of the best one."""
    decode_dir = Path(decode_dir)
    refs = read_table(Path(data_dir) / "text", allow_empty_value=True)
    hyp_paths = sorted(decode_dir.glob("hyp.*.txt"), key=lambda p: float(p.name[4:-4]))
    if not hyp_paths:
        raise InputError("no hyp.<LMWT>.txt files: run decode first", decode_dir)
    results: dict[float, WerResult] = {}
    for path in hyp_paths:
        w = float(path.name[4:-4])
        hyps = read_hyps(path)
        extra = sorted(set(hyps) - set(refs))
        if extra:
            raise InputError(f"hypothesis for {extra[0]} not in {data_dir}/text", path)
        missing = sorted(set(refs) - set(hyps))
        if missing:
            raise InputError(f"no hypothesis for {len(missing)} utterance(s), e.g. "
                             f"{missing[0]}", path)  # fmt: skip
        result, rows = compute_wer(refs, hyps, w)
        results[w] = result
        with atomic_open(decode_dir / f"wer.{w:g}") as f:
            f.write(result.kaldi_line() + "\n")
            f.write(f"%SER {100.0 * result.sentence_errors / result.utterances:.2f} "
                    f"[ {result.sentence_errors} / {result.utterances} ]\n")  # fmt: skip
        with atomic_open(decode_dir / f"per_utt.{w:g}") as f:
            for utt, ref, hyp, us, ud, ui, nw in rows:
                f.write(f"{utt} ref {ref}\n{utt} hyp {hyp}\n")
                f.write(f"{utt} #csid {nw - us - ud} {us} {ui} {ud}\n")
    if lmwt is not None:
        if lmwt not in results:
            raise InputError(f"no {hyp_file(lmwt)} (LM weights decoded: {sorted(results)})",
                             decode_dir)  # fmt: skip
        chosen = results[lmwt]
    else:
        chosen = min(results.values(), key=lambda r: (r.wer, r.lmwt))
    with atomic_open(decode_dir / "best_wer") as f:
        f.write(f"{chosen.kaldi_line()} {decode_dir}/wer.{chosen.lmwt:g}\n")
    with atomic_open(decode_dir / "scores.yaml") as f:
        f.write(f"lmwt: {chosen.lmwt:g}\nwer: {chosen.wer:.4f}\nfixed_lmwt: {lmwt is not None}\n")
        f.write("by_lmwt:\n")
        f.writelines(f"  {w:g}: {r.wer:.4f}\n" for w, r in results.items())
    log.info("%s: %s at LM weight %g%s", decode_dir, chosen.kaldi_line(), chosen.lmwt,
             " (fixed)" if lmwt is not None else " (best)")  # fmt: skip
    return chosen


def read_best_lmwt(decode_dir: str | Path) -> float:
    """The LM weight ``score`` chose for a (dev) decode dir."""
    path = Path(decode_dir) / "scores.yaml"
    if not path.is_file():
        raise InputError("missing scores.yaml: score this decode dir first", path.parent)
    for line in path.read_text().splitlines():
        if line.startswith("lmwt:"):
            return float(line.split()[1])
    raise InputError("no 'lmwt:' line", path)


def frame_accuracy(
    predictions: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray]
) -> tuple[float, int]:
    """Share of frames whose predicted pdf (argmax) equals the aligned pdf, over the
    utterances in both, and the number of frames compared."""
    correct = total = 0
    for utt, target in targets.items():
        pred = predictions.get(utt)
        if pred is None:
            continue
        if len(pred) != len(target):
            raise ValueError(f"{utt}: {len(pred)} predicted frames, {len(target)} aligned")
        correct += int((np.asarray(pred) == np.asarray(target)).sum())
        total += len(target)
    return correct / max(total, 1), total
