"""Decoding: the oracle test (graph, decodable and decoder agree) and GMM decoding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asr_distill.cli import main
from asr_distill.decode.decode import DecodeConfig, decode, pdf_loglikes_to_tid_columns
from asr_distill.decode.score import compute_wer, hyp_file, read_best_setting
from asr_distill.hmm.align import read_alignments
from asr_distill.hmm.model import GmmHmm


@pytest.fixture(scope="module")
def mono_graph(gmm_system: Path, mono: Path, lang_test: Path) -> Path:
    graph = gmm_system / "exp" / "mono" / "graph"
    assert main(["mkgraph", str(lang_test), str(mono), str(graph)]) == 0
    return graph


@pytest.fixture(scope="module")
def mono_ali(gmm_system: Path, mono: Path) -> Path:
    ali = gmm_system / "exp" / "mono_ali_oracle"
    data, lang = gmm_system / "data" / "train_mfcc", gmm_system / "data" / "lang"
    assert main(["align", "--nj", "2", str(data), str(lang), str(mono), str(ali)]) == 0
    return ali


def test_tid_columns_match_decodable_indexing(mono):
    model = GmmHmm.load(mono)
    pdf_ll = np.random.default_rng(0).standard_normal((3, model.num_pdfs)).astype(np.float32)
    cols = pdf_loglikes_to_tid_columns(model, pdf_ll)
    assert cols.shape == (3, model.trans_model.num_transition_ids)
    for tid in (1, 7, model.trans_model.num_transition_ids):
        pdf = model.trans_model.transition_id_to_pdf(tid)
        np.testing.assert_array_equal(cols[:, tid - 1], pdf_ll[:, pdf])


@pytest.mark.parametrize("lattice", [True, False])
def test_oracle_loglikes_decode_to_the_reference(gmm_system, mono, mono_graph, mono_ali, lattice):
    """Perfect log-likelihoods from each utterance's forced alignment (0 for the aligned
    pdf, -1000 elsewhere) decode to its transcript: WER 0 on every aligned utterance,
    from a lattice and from kaldi-hmm-gmm's one-best search."""
    model = GmmHmm.load(mono)
    pdfs = read_alignments(mono_ali, "pdf.ark")
    perfect = {}
    for utt, p in pdfs.items():
        m = np.full((len(p), model.num_pdfs), -1000.0, np.float32)  # (T, num_pdfs)
        m[np.arange(len(p)), p] = 0.0
        perfect[utt] = m
    utts = sorted(perfect)
    config = DecodeConfig(lmwts=[1.0], word_ins_penalties=[0.0], lattice=lattice)
    hyps = decode(mono_graph, model, utts, perfect.__getitem__, config, kind="loglikes",
                  nj=2)[1.0, 0.0]  # fmt: skip
    words = {line.split()[0] for line in (mono_graph / "words.txt").read_text().splitlines()}
    text = dict(
        line.split(" ", 1) for line in (gmm_system / "data" / "train" / "text")
        .read_text().splitlines()
    )  # fmt: skip
    refs = {u: " ".join(w if w in words else "<UNK>" for w in text[u].split()) for u in utts}
    result, rows = compute_wer(refs, {u: " ".join(hyps[u] or []) for u in utts})
    assert len(utts) >= 50
    assert result.errors == 0, [r for r in rows if sum(r[3:6])][:3]


def test_gmm_decode_and_score(gmm_system, mono, mono_graph):
    data = gmm_system / "data" / "train_mfcc"
    out = gmm_system / "exp" / "mono" / "decode_train"
    assert main(["decode", "--nj", "2", "--lmwts", "8,12", str(mono_graph), str(mono),
                 str(data), str(out)]) == 0  # fmt: skip
    assert (out / "hyp.8.txt").is_file() and (out / "hyp.12.txt").is_file()
    assert "real-time factor" in (out / "log" / "decode.log").read_text()
    assert main(["score", str(out), str(gmm_system / "data" / "train")]) == 0
    wer = float((out / "best_wer").read_text().split()[1])
    # A monophone model decoding its own (seen) training data does far better than chance.
    assert wer < 60.0


def test_gmm_align_and_decode_run_without_torch(gmm_system, mono, mono_graph, tmp_path):
    """A GMM step never imports torch (1.5 s, more than a small step's work)."""
    data, lang = gmm_system / "data" / "train_mfcc", gmm_system / "data" / "lang"
    steps = [
        ["align", "--nj", "2", data, lang, mono, tmp_path / "ali"],
        ["decode", "--nj", "2", "--lmwts", "10", mono_graph, mono, data, tmp_path / "dec"],
    ]
    code = ("import sys; from asr_distill.cli import main; "
            f"codes = [main(list(map(str, s))) for s in {[list(map(str, s)) for s in steps]!r}]; "
            "print(codes, 'torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split("\n")[-2] == "[0, 0] False", out.stderr[-3000:]


def test_decode_at_the_lm_weight_chosen_on_dev(gmm_system, mono, mono_graph, tmp_path):
    """--lmwt-from decodes one pass, at the weight score chose in the dev decode dir."""
    data, text = gmm_system / "data" / "train_mfcc", gmm_system / "data" / "train"
    dev = tmp_path / "decode_dev"
    assert main(["decode", "--nj", "2", "--lmwts", "3,12", str(mono_graph), str(mono),
                 str(data), str(dev)]) == 0  # fmt: skip
    assert main(["score", "--lmwt", "3", str(dev), str(text)]) == 0  # 3 is not the best
    test = tmp_path / "decode_test"
    assert main(["decode", "--nj", "2", "--lmwt-from", str(dev), str(mono_graph), str(mono),
                 str(data), str(test)]) == 0  # fmt: skip
    lmwt, wip = read_best_setting(dev)  # 3 and the best penalty at 3
    assert lmwt == 3 and wip in (0, 0.5, 1)
    name = hyp_file(lmwt, wip)
    assert sorted(p.name for p in test.glob("hyp.*.txt")) == [name]
    # dev's lattices were searched at weight 3 too (the lower of two): the same paths
    assert (test / name).read_text() == (dev / name).read_text()
    assert main(["score", "--lmwt-from", str(dev), str(test), str(text)]) == 0
    assert (test / "scores.yaml").read_text().startswith(f"lmwt: 3\nwip: {wip:g}\n")
    assert main(["decode", "--lmwt-from", str(tmp_path / "nowhere"), str(mono_graph),
                 str(mono), str(data), str(tmp_path / "x")]) == 1  # fmt: skip
