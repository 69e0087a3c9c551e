"""Scoring: WER of a decode dir with jiwer (Kaldi's score.sh: one WER per LM weight,
the best on dev applied unchanged to test) and frame accuracy against pdf alignments.

``score`` writes into the decode dir, for every scoring setting (LM weight, or LM
weight and word insertion penalty: ``10`` or ``10_0.5``), ``wer.<SETTING>``
(``%WER x [ errors / words, ins, del, sub ]`` as Kaldi's compute-wer) and
``per_utt.<SETTING>`` (reference, hypothesis and error counts per utterance); then
``best_wer``, ``scores.yaml`` and, where the decode dir has lattices, ``oracle_wer``
(the fewest errors of any path in the lattices: Kaldi's lattice-oracle).
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


def setting_name(lmwt: float, wip: float = 0.0) -> str:
    """``10`` at penalty 0, ``10_0.5`` at penalty 0.5 (Kaldi's ``wer_LMWT_WIP``)."""
    return f"{lmwt:g}" if wip == 0 else f"{lmwt:g}_{wip:g}"


def hyp_file(lmwt: float, wip: float = 0.0) -> str:
    """A decode dir's hypotheses at LM weight ``lmwt`` and word insertion penalty
    ``wip`` (written by decode)."""
    return f"hyp.{setting_name(lmwt, wip)}.txt"


def _parse_setting(name: str, path: Path) -> tuple[float, float]:
    lmwt, _, wip = name.partition("_")
    try:
        return float(lmwt), float(wip or 0)
    except ValueError:
        raise InputError("expected hyp.<LMWT>.txt or hyp.<LMWT>_<WIP>.txt", path) from None


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
    wip: float = 0.0

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
    decode_dir: str | Path,
    data_dir: str | Path,
    *,
    lmwt: float | None = None,
    wip: float | None = None,
) -> WerResult:
    """Score every ``hyp.<LMWT>[_<WIP>].txt`` of ``decode_dir`` against
    ``data_dir/text``; report the best setting, or the one fixed by ``lmwt`` (and
    ``wip``; chosen on dev): with ``lmwt`` alone, the best penalty at that weight."""
    decode_dir = Path(decode_dir)
    refs = read_table(Path(data_dir) / "text", allow_empty_value=True)
    hyp_paths = {_parse_setting(p.name[4:-4], p): p for p in decode_dir.glob("hyp.*.txt")}
    if not hyp_paths:
        raise InputError("no hyp.<LMWT>.txt files: run decode first", decode_dir)
    results: dict[tuple[float, float], WerResult] = {}
    for (w, p), path in sorted(hyp_paths.items()):
        hyps = read_hyps(path)
        extra = sorted(set(hyps) - set(refs))
        if extra:
            raise InputError(f"hypothesis for {extra[0]} not in {data_dir}/text", path)
        missing = sorted(set(refs) - set(hyps))
        if missing:
            raise InputError(f"no hypothesis for {len(missing)} utterance(s), e.g. "
                             f"{missing[0]}", path)  # fmt: skip
        result, rows = compute_wer(refs, hyps, w)
        result.wip = p
        results[w, p] = result
        name = setting_name(w, p)
        with atomic_open(decode_dir / f"wer.{name}") as f:
            f.write(result.kaldi_line() + "\n")
            f.write(f"%SER {100.0 * result.sentence_errors / result.utterances:.2f} "
                    f"[ {result.sentence_errors} / {result.utterances} ]\n")  # fmt: skip
        with atomic_open(decode_dir / f"per_utt.{name}") as f:
            for utt, ref, hyp, us, ud, ui, nw in rows:
                f.write(f"{utt} ref {ref}\n{utt} hyp {hyp}\n")
                f.write(f"{utt} #csid {nw - us - ud} {us} {ui} {ud}\n")
    candidates = [
        r for (w, p), r in results.items()
        if (lmwt is None or w == lmwt) and (wip is None or p == wip)
    ]  # fmt: skip
    if not candidates:
        asked = f"LM weight {lmwt:g}" + ("" if wip is None else f", penalty {wip:g}")
        raise InputError(f"no hypotheses at {asked} (settings decoded: "
                         f"{[setting_name(*k) for k in sorted(results)]})", decode_dir)  # fmt: skip
    chosen = min(candidates, key=lambda r: (r.wer, r.lmwt, r.wip))
    name = setting_name(chosen.lmwt, chosen.wip)
    with atomic_open(decode_dir / "best_wer") as f:
        f.write(f"{chosen.kaldi_line()} {decode_dir}/wer.{name}\n")
    oracle = lattice_oracle(decode_dir, refs)
    with atomic_open(decode_dir / "scores.yaml") as f:
        f.write(f"lmwt: {chosen.lmwt:g}\nwip: {chosen.wip:g}\nwer: {chosen.wer:.4f}\n"
                f"fixed_lmwt: {lmwt is not None}\n")  # fmt: skip
        if oracle is not None:
            f.write(f"oracle_wer: {oracle.wer:.4f}\n")
        f.write("by_setting:\n")
        f.writelines(f"  '{setting_name(*k)}': {r.wer:.4f}\n" for k, r in sorted(results.items()))
    log.info("%s: %s at LM weight %g, penalty %g%s%s", decode_dir, chosen.kaldi_line(),
             chosen.lmwt, chosen.wip, " (fixed)" if lmwt is not None else " (best)",
             f"; lattice oracle {oracle.kaldi_line()}" if oracle else "")  # fmt: skip
    return chosen


def lattice_oracle(decode_dir: Path, refs: Mapping[str, str]) -> WerResult | None:
    """The lattices' oracle WER (None where the decode dir has none), written to
    ``oracle_wer``. A reference word outside the graph's words counts as an error."""
    from asr_distill.decode.lattice import read_lattices

    paths = sorted(decode_dir.glob("lat.*.gz"))
    if not paths:
        return None
    ids = {}
    for lineno, line in enumerate((decode_dir / "words.txt").read_text("utf-8").splitlines(), 1):
        fields = line.split()
        if len(fields) != 2:
            raise InputError("expected 'word id'", decode_dir / "words.txt", lineno)
        ids[fields[0]] = int(fields[1])
    errors = words = sent = 0
    seen = set()
    for path in paths:
        for utt, lat in read_lattices(path):
            if utt not in refs:
                raise InputError(f"lattice for {utt} not in the reference text", path)
            ref = _words(refs[utt])
            e = lat.oracle_errors(ids.get(w, -1) for w in ref)
            errors, words, sent = errors + e, words + len(ref), sent + int(e > 0)
            seen.add(utt)
    missing = sorted(set(refs) - seen)
    if missing:
        raise InputError(f"no lattice for {len(missing)} utterance(s), e.g. {missing[0]}",
                         decode_dir)  # fmt: skip
    result = WerResult(0.0, words, errors, 0, 0, len(refs), sent)
    with atomic_open(decode_dir / "oracle_wer") as f:
        f.write(f"%WER {result.wer:.2f} [ {errors} / {words} ] (lattice oracle)\n")
    return result


def read_best_setting(decode_dir: str | Path) -> tuple[float, float]:
    """The (LM weight, word insertion penalty) ``score`` chose for a (dev) decode dir."""
    path = Path(decode_dir) / "scores.yaml"
    if not path.is_file():
        raise InputError("missing scores.yaml: score this decode dir first", path.parent)
    found = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("lmwt", "wip"):
            found[key] = float(value)
    if "lmwt" not in found:
        raise InputError("no 'lmwt:' line", path)
    return found["lmwt"], found.get("wip", 0.0)


def read_best_lmwt(decode_dir: str | Path) -> float:
    """The LM weight ``score`` chose for a (dev) decode dir."""
    return read_best_setting(decode_dir)[0]


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
