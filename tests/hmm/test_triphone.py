"""build-tree, convert-ali and train-tri on the fixture's real (synthetic) speech."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from asr_distill.cli import main
from asr_distill.errors import InputError
from asr_distill.hmm.align import read_alignments
from asr_distill.hmm.context_dep import Tree
from asr_distill.hmm.model import GmmHmm, ctx_dep_from_bytes
from asr_distill.hmm.train import load_training_data
from asr_distill.hmm.tree import (
    accumulate_tree_stats,
    build_tree,
    leaf_stats,
    make_questions,
    read_questions,
    read_roots,
)
from asr_distill.hmm.tree_stats import TreeStats, _utterance_events, tid_tables
from asr_distill.hmm.triphone import convert_ali_dir, convert_alignments, init_from_tree

NUM_LEAVES = 120
MIN_COUNT = 50


@pytest.fixture(scope="module")
def mono_ali(gmm_system: Path, mono: Path) -> Path:
    ali = gmm_system / "exp" / "mono_ali"
    data, lang = gmm_system / "data" / "train_mfcc", gmm_system / "data" / "lang"
    assert main(["align", "--nj", "2", str(data), str(lang), str(mono), str(ali)]) == 0
    return ali


@pytest.fixture(scope="module")
def tri1(gmm_system: Path, mono_ali: Path) -> Path:
    exp = gmm_system / "exp" / "tri1"
    data, lang = gmm_system / "data" / "train_mfcc", gmm_system / "data" / "lang"
    args = ["train-tri", "--nj", "2", "--num-leaves", str(NUM_LEAVES), "--min-count",
            str(MIN_COUNT), "--thresh", "0", "--tot-gauss", "600", "--num-iters", "12"]  # fmt: skip
    assert main([*args, str(data), str(lang), str(mono_ali), str(exp)]) == 0
    return exp


def test_build_tree_dir(gmm_system, mono_ali, tmp_path):
    data, lang = gmm_system / "data" / "train_mfcc", gmm_system / "data" / "lang"
    out = tmp_path / "tree"
    assert main(["build-tree", "--num-leaves", "80", "--thresh", "0", "--cluster-thresh", "0",
                 str(data), str(lang), str(mono_ali), str(out)]) == 0  # fmt: skip
    tree = Tree.read(out / "tree")
    assert tree.num_pdfs == 80  # no post-clustering: exactly the leaves asked for
    # The file is Kaldi's binary tree; kaldi-hmm-gmm reads it and agrees with our tree.
    ctx = ctx_dep_from_bytes((out / "tree").read_bytes())
    assert ctx.num_pdfs == 80 and str(ctx) == tree.to_text()
    dump = (out / "tree.txt").read_text()
    assert "centre in {SIL" in dump and "80 pdfs" in dump
    assert TreeStats.load(out / "tree_stats.npz").num_events > 0
    assert (out / "questions.txt").read_text().count("\n") > 10


def test_convert_alignments_keeps_phones_and_states(gmm_system, mono_ali):
    data = load_training_data(gmm_system / "data" / "train_mfcc", gmm_system / "data" / "lang")
    old = GmmHmm.load(mono_ali)
    ali = read_alignments(mono_ali)
    stats = accumulate_tree_stats(old.trans_model, ali, data.feats)
    phones_dir = data.lang.path / "phones"
    classes = old.topo.get_phone_to_num_pdf_classes()
    questions = make_questions(
        stats,
        read_questions(phones_dir / "sets.int"),
        read_questions(phones_dir / "extra_questions.int"),
        classes,
    )
    tree = build_tree(stats, read_roots(phones_dir / "roots.int"), questions, num_leaves=60,
                      phone2num_pdf_classes=classes, thresh=0.0)  # fmt: skip
    new = init_from_tree(tree, stats, old.topo_text)
    converted = convert_alignments(old, new, ali)
    old_tab, new_tab = tid_tables(old.trans_model), tid_tables(new.trans_model)
    pdf_of = np.asarray(new.trans_model.id2pdf_id)
    for utt, tids in ali.items():
        c = converted[utt]
        np.testing.assert_array_equal(old_tab.phone[tids], new_tab.phone[c])
        np.testing.assert_array_equal(old_tab.pdf_class[tids], new_tab.pdf_class[c])
        np.testing.assert_array_equal(old_tab.is_self_loop[tids], new_tab.is_self_loop[c])
    assert (tree.leaves_of(stats.events) >= 0).all()  # every seen context has a leaf
    seen = {int(p) for c in converted.values() for p in pdf_of[c]}
    assert seen <= set(range(tree.num_pdfs)) and len(seen) > 30


def test_convert_ali_step_maps_boundaries_onto_another_tree(gmm_system, mono_ali, tri1, tmp_path):
    import shutil

    lang = gmm_system / "data" / "lang"
    source = tmp_path / "mono_ali"
    shutil.copytree(mono_ali, source)
    with open(source / "failed.txt", "a", encoding="utf-8") as f:
        f.write("utt-x no path within the retry beam\n")  # carried over, never dropped
    same, other = tmp_path / "same", tmp_path / "to_tri1"
    assert main(["convert-ali", str(lang), str(mono_ali), str(source), str(same)]) == 0
    assert (same / "ali.ark").read_bytes() == (mono_ali / "ali.ark").read_bytes()  # identity
    assert main(["convert-ali", str(lang), str(tri1), str(source), str(other)]) == 0
    old, new = read_alignments(mono_ali), read_alignments(other)
    pdfs = read_alignments(other, "pdf.ark")
    pdf_of = np.asarray(GmmHmm.load(tri1).trans_model.id2pdf_id)
    assert new.keys() == old.keys()
    tree = Tree.read(tri1 / "tree")  # our reader, independent of Kaldi's ContextDependency
    tab = tid_tables(GmmHmm.load(mono_ali).trans_model)
    no_ci = np.zeros(int(tab.phone.max()) + 1, dtype=bool)  # real contexts, as Kaldi's lookup
    for utt, tids in old.items():
        np.testing.assert_array_equal(pdfs[utt], pdf_of[new[utt]])
        # Each frame's pdf is tri1's leaf for its phone, its neighbours and its pdf-class.
        events = _utterance_events(tab, tids, no_ci, tree.context_width, tree.central_position)
        np.testing.assert_array_equal(pdfs[utt], tree.leaves_of(events))
    assert (other / "phones.ctm").read_text() == (mono_ali / "phones.ctm").read_text()
    assert (other / "num_pdfs").read_text().strip() == str(GmmHmm.load(tri1).num_pdfs)
    assert "utt-x no path within the retry beam" in (other / "failed.txt").read_text()
    assert sum(map(int, (other / "pdf_counts").read_text().split())) == sum(map(len, old.values()))
    (source / ".done").unlink()  # a killed align: refused, not converted
    with pytest.raises(InputError, match="not a finished alignment dir"):
        convert_ali_dir(lang, tri1, source, tmp_path / "from_unfinished")


def read_curve(exp: Path) -> list[float]:
    rows = [line.split("\t") for line in (exp / "train_curve.tsv").read_text().splitlines()]
    return [float(r[1]) for r in rows[1:]]


def test_tri1_leaves_counts_and_likelihood(gmm_system, mono, tri1):
    model = GmmHmm.load(tri1)
    tree = Tree.read(tri1 / "tree")
    assert model.num_pdfs == tree.num_pdfs <= NUM_LEAVES
    info = (tri1 / "log" / "train.log").read_text()
    assert "post-clustering" in info
    stats = TreeStats.load(tri1 / "tree_stats.npz")
    counts, _, _ = leaf_stats(tree, stats)
    # Every leaf made by a split holds at least min_count frames; only the unsplit stub
    # leaves of rare roots (e.g. SPN, which this corpus never says) may hold fewer.
    num_roots = len((gmm_system / "data" / "lang" / "phones" / "roots.int").read_text()
                    .splitlines())  # fmt: skip
    assert int((counts < MIN_COUNT).sum()) <= num_roots
    curve = read_curve(tri1)
    assert curve[-1] > curve[0] + 1.0
    # tri1 fits the training frames better than mono, each along its own alignment.
    data, lang = gmm_system / "data" / "train_mfcc", gmm_system / "data" / "lang"
    for name, exp in (("mono", mono), ("tri1", tri1)):
        assert main(["align", "--nj", "2", str(data), str(lang), str(exp),
                     str(gmm_system / "exp" / f"{name}_ali_check")]) == 0  # fmt: skip
    like = {
        name: float(
            dict(line.split(": ") for line in (gmm_system / "exp" / f"{name}_ali_check" /
                 "summary.yaml").read_text().splitlines())["acoustic_like_per_frame"]
        )
        for name in ("mono", "tri1")
    }  # fmt: skip
    assert like["tri1"] > like["mono"]


def test_lda_mllt_model_dir_carries_its_transform_to_align(gmm_system, mono_ali, tmp_path):
    data, lang = gmm_system / "data" / "train_mfcc", gmm_system / "data" / "lang"
    exp = tmp_path / "tri2b"
    args = ["train-lda-mllt", "--nj", "2", "--num-leaves", str(NUM_LEAVES), "--min-count",
            str(MIN_COUNT), "--thresh", "0", "--tot-gauss", "600", "--num-iters", "8",
            "--realign-iters", "5", "--mllt-iters", "2,4", "--dim", "30"]  # fmt: skip
    assert main([*args, str(data), str(lang), str(mono_ali), str(exp)]) == 0
    model = GmmHmm.load(exp)
    assert model.dim == 30 and model.transform.matrix.shape == (30, 13 * 7)
    assert (exp / "final.mat").read_bytes()[:5] == b"\0BFM "
    log_text = (exp / "log" / "train.log").read_text()
    gains = [float(x) for x in re.findall(r"MLLT objective gain (-?[\d.]+) per frame", log_text)]
    assert len(gains) == 2 and all(g > 0 for g in gains), log_text
    assert "LDA: 91 -> 30 dims" in log_text
    curve = read_curve(exp)
    assert curve[-1] > curve[0]
    # align with the model dir: its features come through final.mat, and the alignment
    # dir keeps the transform for the next step (train-sat, make-frame-store)
    ali = tmp_path / "tri2b_ali"
    assert main(["align", "--nj", "2", str(data), str(lang), str(exp), str(ali)]) == 0
    np.testing.assert_array_equal(GmmHmm.load(ali).transform.matrix, model.transform.matrix)
    summary = (ali / "summary.yaml").read_text()
    assert "failed: 0" in summary
    # a model dir without the transform's splice options is refused, naming the file
    (exp / "splice_opts").unlink()
    with pytest.raises(InputError, match="splice_opts"):
        GmmHmm.load(exp)
