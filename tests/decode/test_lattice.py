"""The lattice search against kaldi-hmm-gmm's decoder, and what a lattice gives: best
paths at any LM weight and penalty, the oracle, Kaldi's text archive."""

from __future__ import annotations

import gzip

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np
import pytest

from asr_distill.cli import main
from asr_distill.decode.decode import pdf_loglikes_to_tid_columns
from asr_distill.decode.lattice import (
    Lattice,
    LatticeOptions,
    decode_lattice,
    read_graph,
    read_lattices,
    write_lattices,
)
from asr_distill.errors import InputError
from asr_distill.hmm.feats import load_gmm_features
from asr_distill.hmm.model import GmmHmm
from asr_distill.lang.validate import read_fst


@pytest.fixture(scope="module")
def mono_graph(gmm_system, mono, lang_test):
    graph = gmm_system / "exp" / "mono" / "graph_lat"
    assert main(["mkgraph", str(lang_test), str(mono), str(graph)]) == 0
    return graph


def test_read_graph_has_every_arc_of_the_fst(mono_graph):
    fst = read_fst(mono_graph / "HCLG.fst")
    g = read_graph(mono_graph / "HCLG.fst")
    assert g.start == fst.start and g.num_states == fst.num_states
    for s in range(fst.num_states):
        want = sorted((a.ilabel, a.olabel, round(a.weight.value, 5), a.nextstate)
                      for a in kaldifst.ArcIterator(fst, s))  # fmt: skip
        lo, mid, hi = g.index[s, 0], g.index[s, 1], g.index[s + 1, 0]
        rows = [(int(r[0]), int(r[1]), round(float(w), 5), int(r[3]))
                for r, w in zip(g.arcs[lo:hi], g.weights[lo:hi, 2], strict=True)]  # fmt: skip
        assert sorted(rows) == want
        assert all(r[0] != 0 for r in rows[: mid - lo]) and all(r[0] == 0 for r in rows[mid - lo :])
        final = fst.final(s).value
        assert g.final[s] == (np.inf if final == np.inf else pytest.approx(final, abs=1e-6))


def test_gmm_log_likelihoods_of_all_pdfs_match_kaldi(gmm_system, mono):
    model = GmmHmm.load(mono)
    feats = load_gmm_features(gmm_system / "data" / "dev_mfcc")
    x = feats[sorted(feats)[0]][:20]
    ll = model.pdf_log_likelihoods(x)
    want = [[model.am.log_likelihood(p, frame) for p in range(model.num_pdfs)] for frame in x]
    np.testing.assert_allclose(ll, np.asarray(want), rtol=1e-5, atol=1e-3)


def _kaldi_one_best(graph, model, tid_ll, lmwt, beam):
    cfg = khg.LatticeFasterDecoderConfig(beam=beam, lattice_beam=8.0, max_active=100000)
    dec = khg.LatticeFasterDecoder(graph, cfg)
    ok, _, words, _ = khg.decode_utterance_lattice_faster(
        decoder=dec, decodable=khg.DecodableCtc(tid_ll / lmwt), trans_model=model.trans_model,
        utt="u", allow_partial=True,
    )  # fmt: skip
    assert ok
    return list(words)


def test_lattice_best_path_equals_one_best_search_at_each_lm_weight(gmm_system, mono,
                                                                    mono_graph):  # fmt: skip
    """With beams that prune nothing that matters, the lattice searched once at LM weight
    10 holds, at LM weights 6-16, the path kaldi-hmm-gmm's one-best search finds at that
    weight; the lattice is in topological order and within its beam."""
    model = GmmHmm.load(mono)
    fst = read_fst(mono_graph / "HCLG.fst")
    graph = read_graph(mono_graph / "HCLG.fst")
    feats = load_gmm_features(gmm_system / "data" / "dev_mfcc")
    opts = LatticeOptions(beam=25.0, max_active=100000, lattice_beam=20.0)
    compared = 0
    for utt in sorted(feats)[:6]:
        tid_ll = pdf_loglikes_to_tid_columns(model, model.pdf_log_likelihoods(feats[utt]))
        lat, reached = decode_lattice(graph, tid_ll, 1 / 10, opts)
        assert reached and lat.num_arcs > len(feats[utt])
        assert np.all(lat.dst > lat.src) and np.all(np.diff(lat.src) >= 0)
        for lmwt in (6.0, 10.0, 16.0):
            assert lat.best_path(lmwt) == _kaldi_one_best(fst, model, tid_ll, lmwt, 25.0)
            compared += 1
    assert compared == 18


def test_decode_lattice_with_max_active_matches_kaldis_pruning(gmm_system, mono, mono_graph):
    """At the recipes' tight settings (beam 10, max-active 200) the search prunes as
    Kaldi's LatticeFasterDecoder does (its cut-off, adaptive beam and epsilon closure):
    the best paths agree on nearly every utterance."""
    model = GmmHmm.load(mono)
    fst = read_fst(mono_graph / "HCLG.fst")
    graph = read_graph(mono_graph / "HCLG.fst")
    feats = load_gmm_features(gmm_system / "data" / "dev_mfcc")
    opts = LatticeOptions(beam=10.0, max_active=200, min_active=20, lattice_beam=6.0)
    same = 0
    utts = sorted(feats)[:10]
    for utt in utts:
        tid_ll = pdf_loglikes_to_tid_columns(model, model.pdf_log_likelihoods(feats[utt]))
        lat, _ = decode_lattice(graph, tid_ll, 1 / 10, opts)
        cfg = khg.LatticeFasterDecoderConfig(beam=10.0, lattice_beam=6.0, max_active=200,
                                             min_active=20)  # fmt: skip
        _, _, words, _ = khg.decode_utterance_lattice_faster(
            decoder=khg.LatticeFasterDecoder(fst, cfg),
            decodable=khg.DecodableCtc(tid_ll / 10), trans_model=model.trans_model, utt=utt,
            allow_partial=True,
        )  # fmt: skip
        same += lat.best_path(10.0) == list(words)
    assert same >= len(utts) - 1


def _toy() -> Lattice:
    """0 -A-> 1 -B-> 3 and 0 -C-> 2 -eps-> 3 (final): path A B costs 2 graph + 20
    acoustic, path C costs 4 graph + 10 acoustic."""
    return Lattice(
        src=np.array([0, 0, 1, 2], np.int32), dst=np.array([1, 2, 3, 3], np.int32),
        ilabel=np.array([5, 6, 7, 0], np.int32), olabel=np.array([1, 3, 2, 0], np.int32),
        graph=np.array([1.0, 4.0, 1.0, 0.0], np.float32),
        acoustic=np.array([10.0, 10.0, 10.0, 0.0], np.float32),
        final=np.array([np.inf, np.inf, np.inf, 0.0], np.float32),
    )  # fmt: skip


def test_best_path_by_lm_weight_and_penalty():
    lat = _toy()
    # cost = graph + acoustic / lmwt + penalty x words
    assert lat.best_path(1.0) == [3]  # 2 + 20 = 22 against 4 + 10 = 14
    assert lat.best_path(10.0) == [1, 2]  # 2 + 2 = 4 against 4 + 1 = 5
    assert lat.best_path(10.0, penalty=1.5) == [3]  # 4 + 3 = 7 against 5 + 1.5 = 6.5
    empty = Lattice(*(np.zeros(0, t) for t in ("i4", "i4", "i4", "i4", "f4", "f4", "f4")))
    assert empty.best_path(10.0) is None


def test_oracle_errors_by_hand():
    lat = _toy()
    assert lat.oracle_errors([1, 2]) == 0
    assert lat.oracle_errors([3]) == 0
    assert lat.oracle_errors([1]) == 1  # A B: B inserted; C: substituted
    assert lat.oracle_errors([1, 9, 2]) == 1  # A B with 9 deleted
    assert lat.oracle_errors([]) == 1  # C inserted
    assert lat.oracle_errors([4, 4, 4, 4]) == 4  # C for one, three deleted


def test_lattice_archive_round_trip_and_bad_input(tmp_path):
    lat = _toy()
    path = tmp_path / "lat.1.gz"
    write_lattices(path, [("u1", lat), ("u2", lat)])
    with gzip.open(path, "rt") as f:
        text = f.read()
    assert text.startswith("u1\n0 1 5 1 1,10\n0 2 6 3 4,10\n1 3 7 2 1,10\n2 3 0 0 0,0\n3 0,0\n\n")
    back = dict(read_lattices(path))
    assert sorted(back) == ["u1", "u2"]
    for name in ("src", "dst", "ilabel", "olabel", "graph", "acoustic", "final"):
        np.testing.assert_array_equal(getattr(back["u2"], name), getattr(lat, name))
    bad = tmp_path / "lat.2.gz"
    with gzip.open(bad, "wt") as f:
        f.write("u1\n0 1 5 1 1,10\n1 0 6 3 4,10\n0 0,0\n\n")
    with pytest.raises(InputError, match="topological order"):
        list(read_lattices(bad))
    with gzip.open(bad, "wt") as f:
        f.write("u1\n0 1 5 1,10\n\n")
    with pytest.raises(InputError, match=r"lat\.2\.gz:1: lattice u1"):
        list(read_lattices(bad))


def test_decode_writes_lattices_and_score_reports_oracle(gmm_system, mono, mono_graph, tmp_path):
    data, text = gmm_system / "data" / "dev_mfcc", gmm_system / "data" / "dev"
    out = tmp_path / "decode_dev"
    assert main(["decode", "--nj", "2", "--lmwts", "8,12", str(mono_graph), str(mono),
                 str(data), str(out)]) == 0  # fmt: skip
    names = sorted(p.name for p in out.glob("hyp.*.txt"))
    assert names == ["hyp.12.txt", "hyp.12_0.5.txt", "hyp.12_1.txt", "hyp.8.txt",
                     "hyp.8_0.5.txt", "hyp.8_1.txt"]  # fmt: skip
    lattices = dict(kv for p in sorted(out.glob("lat.*.gz")) for kv in read_lattices(p))
    assert len(lattices) == len((text / "text").read_text().splitlines())
    assert main(["score", str(out), str(text)]) == 0
    scores = (out / "scores.yaml").read_text()
    best = float(scores.split("wer: ")[1].split()[0])
    oracle = float(scores.split("oracle_wer: ")[1].split()[0])
    assert oracle < best
    assert (out / "oracle_wer").read_text().startswith("%WER ")


def test_decode_determinized_lattices(gmm_system, mono, mono_graph, tmp_path):
    """decode writes CompactLattices, smaller than ``--no-determinize``'s raw lattices,
    with each word sequence once; the best paths at the search's LM weight are the raw
    lattices'."""
    from asr_distill.decode.determinize import CompactLattice

    data, text = gmm_system / "data" / "dev_mfcc", gmm_system / "data" / "dev"
    dirs = {}
    for det in (False, True):
        out = tmp_path / f"decode_{det}"
        assert main(["decode", "--lmwts", "8,12", *([] if det else ["--no-determinize"]),
                     str(mono_graph), str(mono), str(data), str(out)]) == 0  # fmt: skip
        assert main(["score", str(out), str(text)]) == 0
        dirs[det] = out
    compact = dict(read_lattices(dirs[True] / "lat.1.gz", compact=True))
    raw = dict(read_lattices(dirs[False] / "lat.1.gz"))
    assert compact.keys() == raw.keys()
    for utt, c in compact.items():
        assert isinstance(c, CompactLattice) and c.num_arcs < raw[utt].num_arcs
        pairs = list(zip(c.src.tolist(), c.word.tolist(), strict=True))
        assert len(set(pairs)) == len(pairs)
    for name in ("hyp.8.txt", "hyp.8_0.5.txt"):  # searched at LM weight 8
        assert (dirs[True] / name).read_text() == (dirs[False] / name).read_text()
    oracle = {d: float((dirs[d] / "oracle_wer").read_text().split()[1]) for d in dirs}
    assert oracle[False] <= oracle[True]
