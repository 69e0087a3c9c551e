"""Speaker-adaptive training with fMLLR, and the two-pass align and decode of a SAT
model, on the fixture's real (synthetic) speech."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from asr_distill.cli import main
from asr_distill.hmm.model import GmmHmm
from asr_distill.hmm.sat import (
    ALI_MODEL_DIR,
    TRANS_FILE,
    adapt,
    compose,
    is_sat,
    read_transforms,
    read_utt2spk,
    write_transforms,
)
from asr_distill.hmm.transforms import apply_fmllr

TREE = ["--num-leaves", "100", "--min-count", "50", "--thresh", "0", "--tot-gauss", "500"]


def test_compose_applies_old_then_new_and_transforms_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    old, new = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    x = rng.normal(size=(5, 3)).astype(np.float32)
    twice = apply_fmllr(apply_fmllr(x, old), new)
    np.testing.assert_allclose(apply_fmllr(x, compose(new, old)), twice, rtol=1e-4, atol=1e-4)
    write_transforms(tmp_path / "trans.ark", {"s2": new, "s1": old})
    back = read_transforms(tmp_path / "trans.ark")
    assert list(back) == ["s1", "s2"]
    np.testing.assert_allclose(back["s2"], new, rtol=1e-6)
    feats = {"u1": x, "u2": x}
    out = adapt(feats, back, {"u1": "s1", "u2": "nobody"})
    np.testing.assert_allclose(out["u1"], apply_fmllr(x, back["s1"]))
    assert out["u2"] is x  # a speaker without a transform keeps its features


@pytest.fixture(scope="module")
def sat_system(gmm_system: Path, mono: Path) -> dict[str, Path]:
    data, lang = gmm_system / "data" / "train_mfcc", gmm_system / "data" / "lang"
    exp = gmm_system / "exp"
    steps = [
        ["align", "--nj", "2", data, lang, mono, exp / "mono_ali_sat"],
        ["train-lda-mllt", "--nj", "2", *TREE, "--num-iters", "8", "--realign-iters", "5",
         "--mllt-iters", "2", "--dim", "30", data, lang, exp / "mono_ali_sat", exp / "tri2b"],
        ["align", "--nj", "2", data, lang, exp / "tri2b", exp / "tri2b_ali"],
        ["train-sat", "--nj", "2", *TREE, "--num-iters", "8", "--realign-iters", "5",
         "--fmllr-iters", "2,4", data, lang, exp / "tri2b_ali", exp / "tri3b"],
        ["align", "--nj", "2", data, lang, exp / "tri3b", exp / "tri3b_ali"],
    ]  # fmt: skip
    for step in steps:
        assert main([str(a) for a in step]) == 0, step
    return {"tri2b": exp / "tri2b", "tri3b": exp / "tri3b", "tri3b_ali": exp / "tri3b_ali"}


def test_sat_model_dir_has_transforms_alignment_model_and_gains(gmm_system, sat_system):
    tri3b = sat_system["tri3b"]
    assert is_sat(tri3b) and not is_sat(sat_system["tri2b"])
    model, alimdl = GmmHmm.load(tri3b), GmmHmm.load(tri3b / ALI_MODEL_DIR)
    assert model.dim == alimdl.dim == 30
    np.testing.assert_array_equal(model.transform.matrix,
                                  GmmHmm.load(sat_system["tri2b"]).transform.matrix)  # fmt: skip
    assert alimdl.num_pdfs == model.num_pdfs
    speakers = set(read_utt2spk(gmm_system / "data" / "train_mfcc").values())
    transforms = read_transforms(tri3b / TRANS_FILE)
    assert set(transforms) == speakers
    assert all(W.shape == (30, 31) for W in transforms.values())
    text = (tri3b / "log" / "train.log").read_text()
    gains = [float(g) for g in re.findall(r"objective gain (-?[\d.]+) per frame", text)]
    assert len(gains) == 3 and all(g > 0 for g in gains), text  # initial + 2 re-estimations
    curve = [float(r.split("\t")[1]) for r in (tri3b / "train_curve.tsv").read_text()
             .splitlines()[1:]]  # fmt: skip
    assert curve[-1] > curve[0]


def test_align_with_a_sat_model_runs_two_passes(sat_system):
    ali = sat_system["tri3b_ali"]
    assert is_sat(ali) and (ali / TRANS_FILE).is_file()
    summary = (ali / "summary.yaml").read_text()
    assert "failed: 0" in summary
    # the second pass ran on features adapted by the per-speaker fMLLR of the first
    text = (ali / "log" / "align.log").read_text()
    assert "fMLLR for" in text


def test_decode_with_a_sat_model_adapts_after_a_first_pass(gmm_system, sat_system, lang_test):
    tri3b = sat_system["tri3b"]
    assert main(["mkgraph", str(lang_test), str(tri3b), str(tri3b / "graph")]) == 0
    out = tri3b / "decode_dev"
    assert main(["decode", "--nj", "2", "--lmwts", "10", "--first-pass-lmwt", "10",
                 str(tri3b / "graph"), str(tri3b), str(gmm_system / "data" / "dev_mfcc"),
                 str(out)]) == 0  # fmt: skip
    text = (out / "log" / "decode.log").read_text()
    assert re.search(r"first pass: (\d+) of \1 utterances decoded; fMLLR for \d+ speakers",
                     text), text  # fmt: skip
    assert (out / "hyp.10.txt").read_text().strip()
