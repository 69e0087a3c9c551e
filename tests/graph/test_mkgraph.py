"""mkgraph: HCLG from a toy lang (homophones, a trigram LM) and mono/triphone models,
checked by decoding oracle log-likelihoods made from forced alignments."""

from __future__ import annotations

import argparse
import logging
import re
import shutil
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np
import pytest

from asr_distill.cli import graph_cmds
from asr_distill.errors import InputError
from asr_distill.graph import make_graph
from asr_distill.graph.fst_ops import arc_table, relabel_to_epsilon, stochasticity
from asr_distill.hmm.context_dep import ConstantNode, SplitNode, TableNode, Tree
from asr_distill.hmm.model import GmmHmm, init_mono, make_diag_gmm, read_topo_text
from asr_distill.hmm.tree_stats import PDF_CLASS_KEY
from asr_distill.lang.dictionary import DictDir, write_dict_dir
from asr_distill.lang.grammar import make_g
from asr_distill.lang.lang_dir import prepare_lang, read_symbol_table
from asr_distill.lang.lm import train_lm

LEXICON = [
    ("<UNK>", ("SPN",)),
    ("BA", ("B", "AE")),  # a prefix of BAT
    ("BAT", ("B", "AE", "T")),
    ("BEAD", ("B", "IY", "D")),
    ("BET", ("B", "EH", "T")),
    ("DEBT", ("D", "EH", "T")),
    ("EAT", ("IY", "T")),
    ("READ", ("R", "EH", "D")),  # homophones: only the LM tells them apart
    ("RED", ("R", "EH", "D")),
    ("READ", ("R", "IY", "D")),  # and a second pronunciation
    ("TEA", ("T", "IY")),
    ("TREAT", ("T", "R", "IY", "T")),
]
VOWELS = ("AE", "EH", "IY")
LM_TEXT = """\
I READ TEA
I READ BA
THE RED BAT
A RED BEAD
I READ A DEBT
THE RED TEA
I EAT A TREAT
THE BAT ATE TEA
A BET TEA
"""
# LM words not in the lexicon (I, THE, A, ATE) are skipped by make-g with their n-grams.
SENTENCES = [
    "READ TEA",
    "RED BAT",
    "RED BEAD",
    "EAT TREAT",
    "BAT TEA",
    "READ BA",
    "BET TEA",
    "READ DEBT",
]


@pytest.fixture(scope="module")
def lang_test(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("graph_lang")
    write_dict_dir(
        DictDir(
            lexicon=LEXICON,
            silence_phones=[["SIL"], ["SPN"]],
            nonsilence_phones=[["AE"], ["B"], ["D"], ["EH"], ["IY"], ["R"], ["T"]],
            optional_silence="SIL",
            extra_questions=[["SIL", "SPN"]],
        ),
        root / "dict",
    )
    prepare_lang(root / "dict", root / "lang")
    # Sentences seen with and without the LM's skipped words: trigrams, bigrams and
    # backoff arcs all get used.
    words = {w for w, _ in LEXICON}
    text = LM_TEXT + "".join(
        " ".join(w for w in line.split() if w in words) + "\n" for line in LM_TEXT.splitlines()
    )
    (root / "lm_text").write_text(text * 3 + "".join(s + "\n" for s in SENTENCES))
    train_lm([root / "lm_text"], root / "lm")
    make_g(root / "lm" / "lm.arpa", root / "lang", root / "lang_test")
    return root / "lang_test"


def _save_model(ctx: khg.ContextDependency, topo_text: str, out: Path) -> Path:
    tm = khg.TransitionModel(ctx_dep=ctx, hmm_topo=read_topo_text(topo_text))
    am = khg.AmDiagGmm()
    for _ in range(ctx.num_pdfs):
        am.add_pdf(make_diag_gmm(np.ones(1), np.ones((1, 2)), np.zeros((1, 2))))
    GmmHmm(ctx, topo_text, tm, am).save(out)
    return out


@pytest.fixture(scope="module")
def mono_dir(lang_test, tmp_path_factory) -> Path:
    topo_text = (lang_test / "topo").read_text()
    sets = [[int(x) for x in line.split()] for line in (lang_test / "phones/sets.int").open()]
    model = init_mono(topo_text, np.zeros(2), np.ones(2), shared_phones=sets)
    out = tmp_path_factory.mktemp("mono")
    model.save(out)
    return out


def triphone_tree(lang_dir: Path) -> Tree:
    """A hand-made triphone tree: silence phones context-independent; every state of a
    non-silence phone split on "left is a vowel" and "right is silence or nothing", so
    the pdf sequence depends on the neighbouring phones (across words too)."""
    phones = read_symbol_table(lang_dir / "phones.txt")
    topo = read_topo_text((lang_dir / "topo").read_text())
    num_classes = topo.get_phone_to_num_pdf_classes()
    vowels = tuple(sorted(i for p, i in phones.items() if p.split("_")[0] in VOWELS))
    sil_or_none = tuple(sorted([0] + [i for p, i in phones.items() if p[:3] in ("SIL", "SPN")]))
    leaves = iter(range(10**6))
    by_phone: list[TableNode | None] = [None] * (max(topo.phones) + 1)
    for phone in topo.phones:
        name = next(p for p, i in phones.items() if i == phone)
        states = []
        for _ in range(num_classes[phone]):
            if name[:3] in ("SIL", "SPN"):
                states.append(ConstantNode(next(leaves)))
                continue
            right = [SplitNode(2, sil_or_none, ConstantNode(next(leaves)),
                               ConstantNode(next(leaves))) for _ in range(2)]  # fmt: skip
            states.append(SplitNode(0, vowels, right[0], right[1]))
        by_phone[phone] = TableNode(PDF_CLASS_KEY, states)
    return Tree(TableNode(1, by_phone), next(leaves), context_width=3, central_position=1)


@pytest.fixture(scope="module")
def tri_dir(lang_test, tmp_path_factory) -> Path:
    ctx = triphone_tree(lang_test).to_context_dependency()
    assert (ctx.context_width, ctx.central_position) == (3, 1)
    return _save_model(ctx, (lang_test / "topo").read_text(), tmp_path_factory.mktemp("tri"))


@pytest.fixture(scope="module")
def graphs(lang_test, mono_dir, tri_dir, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("graphs")
    out = {}
    builds = (("mono", mono_dir, False), ("tri", tri_dir, False), ("tri_rmeps", tri_dir, True))
    for name, model_dir, rmeps in builds:
        summary = make_graph(lang_test, model_dir, root / name, rmepsilon=rmeps)
        assert summary is not None
        assert [s.name for s in summary.stages] == ["LG", "CLG", "Ha", "HCLGa", "HCLG"]
        out[name] = (root / name, model_dir)
    return out


# ------------------------------------------------------------------------ the oracle


def forced_alignment(model: GmmHmm, lang_dir: Path, word_ids: list[int], seed: int) -> list[int]:
    """Transition-ids of a random path of the sentence's training graph (equal_align)."""
    lex = kaldifst.StdVectorFst.read(str(lang_dir / "L.fst"))
    kaldifst.arcsort(lex, sort_type="olabel")
    disambig = [int(x) for x in (lang_dir / "phones/disambig.int").read_text().split()]
    compiler = khg.TrainingGraphCompiler(
        trans_model=model.trans_model,
        ctx_dep=model.ctx_dep,
        lex_fst=lex,
        disambig_syms=disambig,
        opts=khg.TrainingGraphCompilerOptions(transition_scale=0.0, self_loop_scale=0.0),
    )
    graph = compiler.compile_graph_from_text(word_ids)
    ok, path = kaldifst.equal_align(
        ifst=graph, length=15 * len(word_ids) + 7, rand_seed=seed, num_retries=10
    )
    assert ok
    ok, tids, _, _ = kaldifst.get_linear_symbol_sequence(path)
    assert ok
    return tids


def oracle_decode(graph_dir: Path, model: GmmHmm, tids: list[int]) -> tuple[list[int], list[int]]:
    """Decode "perfect" log-likelihoods of an alignment with HCLG: 0 for every
    transition-id whose pdf is the frame's pdf, -1000 for the others."""
    tm = model.trans_model
    pdf_of_tid = np.array([tm.transition_id_to_pdf(t) for t in range(1, tm.num_transition_ids + 1)])
    frame_pdfs = pdf_of_tid[np.asarray(tids) - 1]  # (T,)
    loglikes = np.where(pdf_of_tid[None, :] == frame_pdfs[:, None], 0.0, -1000.0)  # (T, tids)
    hclg = kaldifst.StdVectorFst.read(str(graph_dir / "HCLG.fst"))
    decoder = khg.LatticeFasterDecoder(hclg, khg.LatticeFasterDecoderConfig(beam=13.0))
    ok, ali, words, _ = khg.decode_utterance_lattice_faster(
        decoder, khg.DecodableCtc(loglikes.astype(np.float32)), tm, "utt", False
    )
    assert ok
    return list(ali), list(words)


@pytest.mark.parametrize("kind", ["mono", "tri", "tri_rmeps"])
def test_oracle_decoding_gives_the_reference_words(graphs, lang_test, kind):
    graph_dir, model_dir = graphs[kind]
    model = GmmHmm.load(model_dir)
    words = read_symbol_table(graph_dir / "words.txt")
    tm = model.trans_model
    for seed, sentence in enumerate(SENTENCES):
        ref = [words[w] for w in sentence.split()]
        tids = forced_alignment(model, lang_test, ref, seed)
        ali, hyp = oracle_decode(graph_dir, model, tids)
        assert hyp == ref, (kind, sentence)
        # The decoder's path gives every frame the aligned pdf.
        assert [tm.transition_id_to_pdf(t) for t in ali] == [
            tm.transition_id_to_pdf(t) for t in tids
        ]


def test_triphone_pdfs_depend_on_context(tri_dir, lang_test):
    # Guard for the oracle test: with a tree that ignored context, a wrong C would pass.
    tree = triphone_tree(lang_test)
    phones = read_symbol_table(lang_test / "phones.txt")
    t, ae, sil = phones["T_E"], phones["AE_I"], phones["SIL"]
    assert tree.leaf((ae, t, sil, 0)) != tree.leaf((sil, t, sil, 0))
    assert tree.leaf((ae, t, sil, 0)) != tree.leaf((ae, t, ae, 0))


@pytest.mark.parametrize("kind", ["mono", "tri"])
def test_hclg_labels_and_files(graphs, lang_test, kind):
    graph_dir, model_dir = graphs[kind]
    model = GmmHmm.load(model_dir)
    hclg = kaldifst.StdVectorFst.read(str(graph_dir / "HCLG.fst"))
    table = arc_table(hclg)
    num_tids = model.trans_model.num_transition_ids
    # Disambiguation transition-ids are numbered after the real ones: none remain.
    assert table.ilabel.min() >= 0 and table.ilabel.max() <= num_tids
    words = read_symbol_table(lang_test / "words.txt")
    assert set(table.olabel.tolist()) <= set(words.values()) - {words[w] for w in
                                                                ("#0", "<s>", "</s>")}  # fmt: skip
    assert {words["READ"], words["RED"], words["BA"]} <= set(table.olabel.tolist())
    # Self-loops were added: some arcs loop with a non-zero transition-id.
    loops = (table.src == table.dst) & (table.ilabel > 0)
    assert loops.any()
    assert all(model.trans_model.is_self_loop(int(t)) for t in table.ilabel[loops])
    assert (graph_dir / "num_pdfs").read_text().strip() == str(model.num_pdfs)
    for name in ("words.txt", "phones.txt", "phones/silence.csl", "phones/disambig.int",
                 "phones/word_boundary.int", "config.yaml", ".done"):  # fmt: skip
        assert (graph_dir / name).is_file(), name
    assert (graph_dir / "words.txt").read_bytes() == (lang_test / "words.txt").read_bytes()
    report = (graph_dir / "stochasticity.txt").read_text().splitlines()
    assert [line.split()[0] for line in report[1:3]] == ["LG", "HCLGa"]
    assert "HCLG not tested" in report[3]  # self-loop scale 0.1: not stochastic by design


def test_relabel_to_epsilon():
    fst = kaldifst.compile("0 1 1 5 0.5\n1 2 9 0 0.25\n2 3 2 6 1\n1 3 0 7\n3 1.5\n")
    out = relabel_to_epsilon(fst, [9], max_label=3)
    t = arc_table(out)
    assert sorted(t.ilabel.tolist()) == [0, 0, 1, 2]
    assert sorted(t.olabel.tolist()) == [0, 5, 6, 7]
    assert sorted(t.weight.tolist()) == [0.0, 0.25, 0.5, 1.0]
    with pytest.raises(ValueError, match="label"):
        relabel_to_epsilon(fst, [9], max_label=1)  # label 2 is neither kept nor dropped


def test_stochasticity_matches_hand_computation():
    # State 0: arcs with probabilities 0.5 + 0.25 -> cost -ln 0.75; state 1: final 1.
    fst = kaldifst.compile(f"0 1 1 1 {np.log(2)}\n0 1 2 2 {np.log(4)}\n1 0\n")
    st = stochasticity(fst)
    assert st.min_cost == pytest.approx(0.0, abs=1e-6)
    assert st.max_cost == pytest.approx(-np.log(0.75), abs=1e-5)
    assert not st.is_stochastic()


def test_hclg_of_stochastic_g_is_nearly_stochastic(graphs):
    # HCLGa of a monophone model with transition_scale 1: each state's outgoing mass is
    # a probability distribution up to what G's backoff and rmepsilon change; far from
    # 0 would mean lost or doubled weights.
    graph_dir, _ = graphs["mono"]
    rows = dict(line.split(maxsplit=1) for line in (graph_dir / "stochasticity.txt").open()
                if not line.startswith("#"))  # fmt: skip
    lo, hi = (float(x) for x in rows["HCLGa"].split())
    assert -3.0 < lo <= hi < 3.0


def test_rerun_is_a_no_op_and_force_rebuilds(graphs, lang_test):
    graph_dir, model_dir = graphs["mono"]
    hclg = graph_dir / "HCLG.fst"
    before = hclg.stat().st_mtime_ns
    assert make_graph(lang_test, model_dir, graph_dir) is None
    assert hclg.stat().st_mtime_ns == before
    summary = make_graph(lang_test, model_dir, graph_dir, force=True, self_loop_scale=0.5)
    assert summary is not None and hclg.stat().st_mtime_ns != before
    assert "self_loop_scale: 0.5" in (graph_dir / "config.yaml").read_text()
    summary = make_graph(lang_test, model_dir, graph_dir, force=True, self_loop_scale=1.0)
    assert "HCLG" in summary.stochasticity  # tested, as mkgraph.sh does, with scales 1
    assert (graph_dir / "stochasticity.txt").read_text().splitlines()[3].startswith("HCLG ")
    make_graph(lang_test, model_dir, graph_dir, force=True)  # back to the default


def test_missing_g_is_an_input_error(lang_test, mono_dir, tmp_path):
    lang = tmp_path / "lang"
    shutil.copytree(lang_test, lang)
    (lang / "G.fst").unlink()
    with pytest.raises(InputError, match=r"G\.fst") as e:
        make_graph(lang, mono_dir, tmp_path / "graph")
    assert e.value.path == str(lang / "G.fst")
    assert not (tmp_path / "graph" / ".done").exists()


def test_model_of_another_lang_is_an_input_error(lang_test, tmp_path):
    # A model whose topo covers fewer phones than the lang dir.
    topo = read_topo_text((lang_test / "topo").read_text())
    phones = sorted(topo.phones)[:-1]
    text = (lang_test / "topo").read_text()
    lines = text.splitlines()
    idx = next(i for i, ln in enumerate(lines) if ln.strip() == "<ForPhones>")
    lines[idx + 1] = " ".join(str(p) for p in phones if str(p) in lines[idx + 1].split())
    topo_text = "\n".join(lines) + "\n"
    sub = read_topo_text(topo_text)
    ctx = khg.monophone_context_dependency(
        phones=list(sub.phones), phone2num_pdf_classes=sub.get_phone_to_num_pdf_classes()
    )
    model_dir = _save_model(ctx, topo_text, tmp_path / "model")
    with pytest.raises(InputError, match="do not belong together") as e:
        make_graph(lang_test, model_dir, tmp_path / "graph")
    assert e.value.path == str(model_dir / "topo")


def test_cli(lang_test, mono_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO)  # as the CLI entry sets it up
    parser = argparse.ArgumentParser()
    graph_cmds.register(parser.add_subparsers())
    args = parser.parse_args(["mkgraph", "--self-loop-scale", "0.2", str(lang_test),
                              str(mono_dir), str(tmp_path / "g")])  # fmt: skip
    assert args.func(args) == 0
    assert (tmp_path / "g" / "HCLG.fst").is_file()
    assert "self_loop_scale: 0.2" in (tmp_path / "g" / "config.yaml").read_text()
    logged = (tmp_path / "g" / "log" / "mkgraph.log").read_text()
    for stage in ("LG", "CLG", "Ha", "HCLGa", "HCLG"):
        assert re.search(rf"{stage} +\d+ states +\d+ arcs +[\d.]+ s", logged), stage
