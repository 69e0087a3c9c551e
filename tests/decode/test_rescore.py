"""LM rescoring of lattices: a hand-computed case, the identity with the same LM, and
the step on a real decode."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asr_distill.cli import main
from asr_distill.decode.lattice import Lattice, read_lattices
from asr_distill.decode.rescore import LmCost, RescoreConfig, rescore_lattice
from asr_distill.lang.arpa import BackoffLM

LN10 = math.log(10)

UNIGRAM = """\\data\\
ngram 1=5

\\1-grams:
-99 <s>
-0.5 A
-0.6 B
-0.7 C
-0.4 </s>

\\end\\
"""

BIGRAM = """\\data\\
ngram 1=5
ngram 2=3

\\1-grams:
-99 <s> -0.2
-0.5 A -0.1
-0.6 B -0.3
-0.7 C -0.25
-0.4 </s>

\\2-grams:
-0.05 <s> A
-0.02 A B
-0.03 B </s>

\\end\\
"""


def _toy() -> Lattice:
    """0 -A-> 1 -B-> 3 and 0 -C-> 2 -eps-> 3 (final)."""
    return Lattice(
        src=np.array([0, 0, 1, 2], np.int32), dst=np.array([1, 2, 3, 3], np.int32),
        ilabel=np.array([5, 6, 7, 0], np.int32), olabel=np.array([1, 3, 2, 0], np.int32),
        graph=np.array([1.0, 4.0, 1.0, 0.0], np.float32),
        acoustic=np.array([10.0, 10.0, 10.0, 0.0], np.float32),
        final=np.array([np.inf, np.inf, np.inf, 0.5], np.float32),
    )  # fmt: skip


def _paths(lat: Lattice) -> dict[tuple[int, ...], tuple[float, float]]:
    """Every complete path's words -> (graph cost with the final cost, acoustic cost)."""
    out = {}

    def walk(s, words, g, a):
        if lat.final[s] < np.inf:
            out[tuple(words)] = (g + float(lat.final[s]), a)
        for k in np.flatnonzero(lat.src == s):
            w = int(lat.olabel[k])
            walk(int(lat.dst[k]), words + ([w] if w else []), g + float(lat.graph[k]),
                 a + float(lat.acoustic[k]))  # fmt: skip

    walk(0, [], 0.0, 0.0)
    return out


@pytest.fixture
def lms(tmp_path):
    words = {1: "A", 2: "B", 3: "C"}
    (tmp_path / "uni.arpa").write_text(UNIGRAM)
    (tmp_path / "bi.arpa").write_text(BIGRAM)
    config = RescoreConfig(old_lm=str(tmp_path / "uni.arpa"), new_lm=str(tmp_path / "bi.arpa"))

    def cost(name):
        path = tmp_path / name
        return LmCost(BackoffLM.read_arpa(path), words, config, path)

    return cost("uni.arpa"), cost("bi.arpa")


def test_rescoring_by_hand(lms):
    uni, bi = lms
    lat = rescore_lattice(_toy(), uni, bi)
    paths = _paths(lat)
    # new cost - old cost. A B: the bigrams <s> A, A B, B </s> are listed
    d_ab = LN10 * ((0.05 + 0.02 + 0.03) - (0.5 + 0.6 + 0.4))
    # C: bigram backs off: bow(<s>) + p(C), then bow(C) + p(</s>)
    d_c = LN10 * ((0.2 + 0.7 + 0.25 + 0.4) - (0.7 + 0.4))
    assert paths[(1, 2)][0] == pytest.approx(1 + 1 + 0.5 + d_ab, abs=1e-5)
    assert paths[(3,)][0] == pytest.approx(4 + 0 + 0.5 + d_c, abs=1e-5)
    assert paths[(1, 2)][1] == 20 and paths[(3,)][1] == 10  # acoustic costs kept
    assert np.all(lat.dst > lat.src) and np.all(np.diff(lat.src) >= 0)


def test_rescoring_with_the_same_lm_is_the_identity(lms):
    _, bi = lms
    lat = _toy()
    same = rescore_lattice(lat, bi, bi)
    want = _paths(lat)
    got = _paths(same)
    assert sorted(got) == sorted(want)
    for words, (g, a) in want.items():
        assert got[words] == (pytest.approx(g, abs=1e-5), pytest.approx(a))


@pytest.fixture(scope="module")
def decoded(gmm_system, mono, lang_test, tmp_path_factory):
    graph = gmm_system / "exp" / "mono" / "graph_rescore"
    assert main(["mkgraph", str(lang_test), str(mono), str(graph)]) == 0
    out = tmp_path_factory.mktemp("rescore") / "decode_dev"
    assert main(["decode", "--nj", "2", "--lmwts", "8,12", str(graph), str(mono),
                 str(gmm_system / "data" / "dev_mfcc"), str(out)]) == 0  # fmt: skip
    return out


def test_rescore_step_same_lm_keeps_every_hypothesis(gmm_system, decoded, tmp_path):
    """Exact rescoring (no pruning) with the first pass's own LM changes no hypothesis
    at any LM weight and penalty."""
    lm = gmm_system / "lm" / "lm.arpa"  # the G of lang_test
    out = tmp_path / "rescored"
    assert main(["lm-rescore", "--nj", "2", "--beam", "inf", str(lm), str(lm), str(decoded),
                 str(out)]) == 0  # fmt: skip
    hyps = sorted(p.name for p in decoded.glob("hyp.*.txt"))
    assert hyps == sorted(p.name for p in out.glob("hyp.*.txt")) and len(hyps) == 6
    for name in hyps:
        assert (out / name).read_text() == (decoded / name).read_text(), name
    before = dict(kv for p in sorted(decoded.glob("lat.*.gz")) for kv in read_lattices(p))
    after = dict(kv for p in sorted(out.glob("lat.*.gz")) for kv in read_lattices(p))
    assert sorted(before) == sorted(after)
    assert main(["score", str(out), str(gmm_system / "data" / "dev")]) == 0
    assert (out / "oracle_wer").is_file()
    # pruned (the default beam): the best path at the lattice's search weight (8, the
    # middle of 8 and 12) survives
    pruned = tmp_path / "pruned"
    assert main(["lm-rescore", str(lm), str(lm), str(decoded), str(pruned)]) == 0
    assert (pruned / "hyp.8.txt").read_text() == (decoded / "hyp.8.txt").read_text()


def test_rescore_with_another_lm_and_bad_input(gmm_system, decoded, tmp_path):
    data = gmm_system / "data"
    uni = tmp_path / "lm1"
    assert main(["train-lm", "--order", "1", "--vocab", str(data / "lang" / "words.txt"),
                 "--unk-symbol", "<UNK>", str(data / "train"), str(data / "dev"),
                 str(uni)]) == 0  # fmt: skip
    lm = gmm_system / "lm" / "lm.arpa"
    out = tmp_path / "rescored"
    assert main(["lm-rescore", str(lm), str(uni / "lm.arpa"), str(decoded), str(out)]) == 0
    changed = sum((out / p.name).read_text() != p.read_text() for p in decoded.glob("hyp.*"))
    assert changed > 0  # a unigram LM picks other words somewhere
    assert main(["lm-rescore", str(lm), str(lm), str(tmp_path), str(tmp_path / "x")]) == 1
