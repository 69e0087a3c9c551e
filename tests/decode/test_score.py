"""WER scoring and frame accuracy against hand-counted values."""

from __future__ import annotations

import numpy as np
import pytest

from asr_distill.cli import main
from asr_distill.decode.score import compute_wer, frame_accuracy, read_best_lmwt


def test_compute_wer_counts_by_hand():
    refs = {"u1": "A B C D", "u2": "E F", "u3": "G"}
    hyps = {"u1": "A X C", "u2": "E F H", "u3": ""}
    result, rows = compute_wer(refs, hyps)
    # u1: B->X substitution, D deleted; u2: H inserted; u3: G deleted.
    assert (result.substitutions, result.deletions, result.insertions) == (1, 2, 1)
    assert result.words == 7 and result.errors == 4
    assert result.wer == pytest.approx(100 * 4 / 7)
    assert result.sentence_errors == 3
    assert result.kaldi_line() == "%WER 57.14 [ 4 / 7, 1 ins, 2 del, 1 sub ]"
    assert rows[0] == ("u1", "A B C D", "A X C", 1, 1, 0, 4)
    with pytest.raises(ValueError, match="no hypothesis"):
        compute_wer(refs, {"u1": "A"})


def write(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines))


def test_score_picks_best_lmwt_and_applies_fixed_one(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write(data / "text", ["u1 A B C", "u2 D E"])
    dev, test = tmp_path / "dev", tmp_path / "test"
    for d in (dev, test):
        d.mkdir()
    write(dev / "hyp.9.txt", ["u1 A B C", "u2 D"])  # 1 error
    write(dev / "hyp.11.txt", ["u1 A B C", "u2 D E"])  # 0 errors
    write(test / "hyp.9.txt", ["u1 A B C", "u2 D E"])  # best on test, but not chosen on dev
    write(test / "hyp.11.txt", ["u1 A", "u2 D E"])
    assert main(["score", str(dev), str(data)]) == 0
    assert read_best_lmwt(dev) == 11
    assert (dev / "wer.9").read_text().startswith("%WER 20.00 [ 1 / 5, 0 ins, 1 del, 0 sub ]")
    assert main(["score", str(test), str(data), "--lmwt-from", str(dev)]) == 0
    assert (test / "best_wer").read_text().startswith("%WER 40.00 [ 2 / 5")
    assert "u1 #csid 1 0 0 2" in (test / "per_utt.11").read_text()
    write(test / "hyp.13.txt", ["u1 A B C"])  # u2 missing: an error, not a silent skip
    assert main(["score", str(test), str(data)]) == 1


def test_frame_accuracy():
    pred = {"a": np.array([1, 2, 3, 4]), "b": np.array([5, 5])}
    ali = {"a": np.array([1, 2, 0, 4]), "b": np.array([5, 6])}
    acc, n = frame_accuracy(pred, ali)
    assert n == 6 and acc == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="predicted frames"):
        frame_accuracy({"a": np.array([1])}, ali)
