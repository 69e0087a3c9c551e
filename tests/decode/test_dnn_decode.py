"""Hybrid DNN scoring: ensemble averaging by hand, and decode --dnn end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from asr_distill.cli import main
from asr_distill.decode.dnn import ensemble_log_posteriors, ensemble_log_priors
from asr_distill.features.framestore import FrameStore
from asr_distill.features.framestore_build import build_frame_store
from asr_distill.nnet.model import DnnConfig, SpliceDnn


def small_model(seed: int) -> SpliceDnn:
    torch.manual_seed(seed)
    return SpliceDnn(DnnConfig(num_pdfs=3, feat_dim=2, left_context=1, right_context=1,
                               hidden_layers=1, hidden_dim=4)).eval()  # fmt: skip


def test_ensemble_is_the_mean_of_member_posteriors(tmp_path):
    feats = {"u1": np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)}
    build_frame_store(tmp_path / "fs", feats)
    store = FrameStore(tmp_path / "fs")
    a, b = small_model(0), small_model(1)
    a.set_priors(np.array([1, 1, 2]))
    b.set_priors(np.array([1, 3, 0]))
    x = store.utterance("u1", left=1, right=1)
    with torch.no_grad():
        want = (torch.softmax(a(x), -1) + torch.softmax(b(x), -1)) / 2
    got = ensemble_log_posteriors([a, b], store, "u1")
    torch.testing.assert_close(got.exp(), want)
    prior = (a.log_priors.exp() + b.log_priors.exp()) / 2
    torch.testing.assert_close(ensemble_log_priors([a, b]).exp(), prior)


def test_ensemble_combination_weights_and_no_underflow(tmp_path):
    feats = {"u1": np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)}
    build_frame_store(tmp_path / "fs", feats)
    store = FrameStore(tmp_path / "fs")
    a, b = small_model(0), small_model(1)
    x = store.utterance("u1", left=1, right=1)
    with torch.no_grad():
        la, lb = torch.log_softmax(a(x), -1), torch.log_softmax(b(x), -1)
    geo = ensemble_log_posteriors([a, b], store, "u1", combine="geometric")
    torch.testing.assert_close(geo, torch.log_softmax((la + lb) / 2, -1))
    weighted = ensemble_log_posteriors([a, b], store, "u1", weights=[0.25, 0.75])
    torch.testing.assert_close(weighted.exp(), 0.25 * la.exp() + 0.75 * lb.exp())
    # Logit gaps beyond float range: a posterior of exp(-1e4) is 0 in float32, its log
    # must stay finite (log_softmax), not -inf as log(softmax) gave.
    with torch.no_grad():
        a.output.weight.mul_(1e5)
    got = ensemble_log_posteriors([a], store, "u1")
    assert torch.isfinite(got).all() and got.min() < -1000


@pytest.fixture(scope="module")
def dnn_system(gmm_system: Path, mono: Path) -> Path:
    """fbank frame store of the fixture's train set with mono pdf targets, and a small
    DNN trained on it."""
    data, exp = gmm_system / "data", gmm_system / "exp"
    ali = exp / "mono_ali_dnn"
    assert main(["align", "--nj", "2", str(data / "train_mfcc"), str(data / "lang"), str(mono),
                 str(ali)]) == 0  # fmt: skip
    assert main(["compute-feats", "--kind", "fbank", "--nj", "2", str(data / "train"),
                 str(data / "train_fbank")]) == 0  # fmt: skip
    store = gmm_system / "frames" / "train"
    assert main(["make-frame-store", "--skip-bad", "--targets", str(ali / "pdf.ark"),
                 "--num-pdfs", (ali / "num_pdfs").read_text().strip(),
                 "--cmvn-scp", str(data / "train_fbank" / "cmvn.scp"),
                 "--utt2spk", str(data / "train_fbank" / "utt2spk"),
                 str(data / "train_fbank" / "feats.scp"), str(store)]) == 0  # fmt: skip
    assert main(["train-dnn", "--hidden-layers", "2", "--hidden-dim", "128", "--left-context",
                 "5", "--right-context", "2", "--epochs", "6", "--lr", "0.02", "--batch-size",
                 "128", "--schedule", "constant", "--no-progress", str(store), str(store),
                 str(exp / "dnn")]) == 0  # fmt: skip
    return gmm_system


def test_dnn_frame_accuracy_and_decode(dnn_system, mono, lang_test, capsys):
    exp, store = dnn_system / "exp", dnn_system / "frames" / "train"
    assert main(["frame-accuracy", "--dnn", str(exp / "dnn" / "final"), str(store)]) == 0
    acc = float(capsys.readouterr().out.split("frame accuracy ")[1].split("%")[0])
    assert acc > 30.0  # far above chance over ~127 pdfs, on the data it was trained on
    graph = exp / "mono" / "graph_dnn"
    assert main(["mkgraph", str(lang_test), str(mono), str(graph)]) == 0
    out = exp / "dnn" / "decode_train"
    args = [
        "decode",
        "--nj",
        "2",
        "--lmwts",
        "6,10",
        "--dnn",
        str(exp / "dnn" / "final"),
        "--dnn",
        str(exp / "dnn" / "last"),
        str(graph),
        str(mono),
        str(store),
        str(out),
    ]
    assert main(args) == 0
    assert (out / "models.txt").read_text().count("\n") == 2  # a two-model "ensemble"
    assert main(["score", str(out), str(dnn_system / "data" / "train")]) == 0
    assert float((out / "best_wer").read_text().split()[1]) < 20.0  # seen data, small LM


def test_decode_with_specialists(dnn_system, mono, lang_test):
    exp, store = dnn_system / "exp", dnn_system / "frames" / "train"
    gen = str(exp / "dnn" / "final")
    phones = str(dnn_system / "data" / "lang" / "phones.txt")
    sets = exp / "senone_sets"
    assert main(["cluster-senones", "--num-sets", "3", "--gmm-dir", str(mono), "--phones", phones,
                 gen, str(store), str(sets)]) == 0  # fmt: skip
    assert "SIL" in (sets / "sets_readable.txt").read_text()
    specs = exp / "specialists"
    assert main(["train-specialists", "--epochs", "1", "--batch-size", "128", "--lr", "0.01",
                 "--no-progress", gen, str(sets / "sets.txt"), str(store), str(store),
                 str(specs)]) == 0  # fmt: skip
    graph = exp / "mono" / "graph_dnn"
    if not (graph / "HCLG.fst").is_file():
        assert main(["mkgraph", str(lang_test), str(mono), str(graph)]) == 0
    out = exp / "dnn" / "decode_train_specialists"
    args = ["decode", "--nj", "2", "--lmwts", "10", "--dnn", gen, "--specialists", str(specs),
            str(graph), str(mono), str(store), str(out)]  # fmt: skip
    assert main(args) == 0
    assert "specialists" in (out / "combine.yaml").read_text()
    assert main(["score", str(out), str(dnn_system / "data" / "train")]) == 0
    assert float((out / "best_wer").read_text().split()[1]) < 40.0
    assert main(args) == 0  # finished, same request: nothing to do
    # finished with top-1 activation: another top-n (or no specialists) is refused
    assert main([*args[:1], "--specialist-top-n", "2", *args[1:]]) == 1
    assert main([a for a in args if a not in ("--specialists", str(specs))]) == 1
    two = ["decode", "--lmwts", "10", "--dnn", gen, "--dnn", gen, "--specialists", str(specs),
           str(graph), str(mono), str(store), str(out) + "_two"]  # fmt: skip
    assert main(two) == 1  # one generalist only
