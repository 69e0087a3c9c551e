"""Lattice determinization against brute force: on random acyclic lattices, the
determinized lattice has each word sequence once, with the cost, costs and
transition-ids of that sequence's best path; pruning keeps exactly what is within the
beam; Kaldi's CompactLattice text round trip."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from asr_distill.decode.determinize import CompactLattice, determinize_lattice
from asr_distill.decode.lattice import Lattice, read_lattices, write_lattices
from asr_distill.errors import InputError

SCALE = 0.25


def _random_lattice(rng: np.random.Generator, n: int = 9, arcs: int = 22) -> Lattice:
    rows = set()
    while len(rows) < arcs:
        s = int(rng.integers(0, n - 1))
        d = int(rng.integers(s + 1, n))
        il = int(rng.integers(0, 4)) if rng.random() < 0.8 else 0
        ol = int(rng.integers(1, 4)) if rng.random() < 0.35 else 0
        rows.add((s, d, il, ol))
    rows = sorted(rows)
    final = np.full(n, np.inf, np.float32)
    final[n - 1] = 0.0
    final[rng.choice(n - 1, 2, replace=False)] = rng.uniform(0, 2, 2)
    col = np.asarray(rows, np.int32).T
    g = rng.uniform(0, 3, len(rows)).astype(np.float32)
    a = rng.uniform(0, 12, len(rows)).astype(np.float32)
    return Lattice(col[0], col[1], col[2], col[3], g, a, final)


def _paths(lat: Lattice):
    """Every complete path: (words, graph, acoustic, transition-ids)."""
    out = []

    def walk(s, words, g, a, tids):
        if lat.final[s] < np.inf:
            out.append((tuple(words), g + float(lat.final[s]), a, tuple(tids)))
        for k in np.flatnonzero(lat.src == s):
            w, i = int(lat.olabel[k]), int(lat.ilabel[k])
            walk(int(lat.dst[k]), words + [w] * (w != 0), g + float(lat.graph[k]),
                 a + float(lat.acoustic[k]), tids + [i] * (i != 0))  # fmt: skip

    walk(0, [], 0.0, 0.0, [])
    return out


def _best_by_words(paths):
    best = {}
    for words, g, a, tids in paths:
        if words not in best or g + SCALE * a < best[words][0] + SCALE * best[words][1]:
            best[words] = (g, a, tids)
    return best


def _compact_paths(c: CompactLattice):
    out = []

    def walk(s, words, g, a, tids):
        if c.final_graph[s] < np.inf:
            f = c.final_tids[c.final_index[s] : c.final_index[s + 1]].tolist()
            out.append((tuple(words), g + float(c.final_graph[s]),
                        a + float(c.final_acoustic[s]), tuple(tids + f)))  # fmt: skip
        for k in np.flatnonzero(c.src == s):
            t = c.tids[c.tid_index[k] : c.tid_index[k + 1]].tolist()
            walk(int(c.dst[k]), [*words, int(c.word[k])], g + float(c.graph[k]),
                 a + float(c.acoustic[k]), tids + t)  # fmt: skip

    if c.num_states:
        walk(0, [], 0.0, 0.0, [])
    return out


@pytest.mark.parametrize("seed", range(40))
def test_each_word_sequence_once_with_its_best_path(seed):
    lat = _random_lattice(np.random.default_rng(seed))
    want = _best_by_words(_paths(lat))
    c, beam = determinize_lattice(lat, SCALE, beam=1e9)
    assert beam == 1e9
    if not want:  # no final state reached
        assert c.num_states == 0 and c.to_lattice().best_path(4.0) is None
        return
    got = _compact_paths(c)
    assert sorted(w for w, *_ in got) == sorted(want)  # each sequence exactly once
    for words, g, a, tids in got:
        wg, wa, wt = want[words]
        assert g == pytest.approx(wg, abs=1e-3) and a == pytest.approx(wa, abs=1e-3)
        assert tids == wt
    # an acceptor on words without epsilons, deterministic, states in topological order
    assert np.all(c.word > 0) and np.all(c.dst > c.src) and np.all(np.diff(c.src) >= 0)
    pairs = list(zip(c.src.tolist(), c.word.tolist(), strict=True))
    assert len(set(pairs)) == len(pairs)
    # as a state-level lattice: the same best paths at any LM weight
    back = c.to_lattice()
    for lmwt in (1 / SCALE, 2.0, 9.0):
        for penalty in (0.0, 1.5):
            if lmwt == 1 / SCALE:
                assert back.best_path(lmwt, penalty) == lat.best_path(lmwt, penalty)
            best = min(want.items(), key=lambda kv: kv[1][0] + kv[1][1] / lmwt
                       + penalty * len(kv[0]))  # fmt: skip
            assert back.best_path(lmwt, penalty) == list(best[0])


@pytest.mark.parametrize("seed", range(20))
def test_pruning_keeps_what_is_within_the_beam(seed):
    lat = _random_lattice(np.random.default_rng(100 + seed), n=10, arcs=26)
    want = _best_by_words(_paths(lat))
    costs = {w: g + SCALE * a for w, (g, a, _) in want.items()}
    best = min(costs.values())
    c, _ = determinize_lattice(lat, SCALE, beam=1.0)
    got = {w: g + SCALE * a for w, g, a, _ in _compact_paths(c)}
    assert {w for w, v in costs.items() if v <= best + 1.0 - 1e-4} <= set(got)
    for w, v in got.items():
        assert v == pytest.approx(costs[w], abs=1e-3)


def test_a_hand_made_lattice():
    """Two alignments of word 5 (tids 1 1 2 and 1 2 2) and one of word 6: the first is
    cheaper; both words share their first transition-id, which stays on the arcs."""
    lat = Lattice(
        np.array([0, 0, 0, 1, 2, 3, 4, 5], np.int32), np.array([1, 2, 3, 4, 5, 6, 6, 6], np.int32),
        np.array([1, 1, 1, 1, 2, 3, 2, 2], np.int32), np.array([5, 5, 6, 0, 0, 0, 0, 0], np.int32),
        np.array([1, 1, 2, 0, 0, 0, 0, 0], np.float32),
        np.array([1, 1, 1, 1, 2, 3, 1, 3], np.float32),
        np.array([np.inf] * 6 + [0.5], np.float32),
    )  # fmt: skip
    c, _ = determinize_lattice(lat, 1.0, beam=100.0)
    got = sorted(_compact_paths(c))
    assert got == [((5,), 1.5, 3.0, (1, 1, 2)), ((6,), 2.5, 4.0, (1, 3))]
    assert c.num_arcs == 2 and c.num_states == 2


def test_compact_text_round_trip_and_errors(tmp_path):
    lat = _random_lattice(np.random.default_rng(7))
    c, _ = determinize_lattice(lat, SCALE, beam=1e9)
    path = tmp_path / "lat.1.gz"
    write_lattices(path, [("u1", c), ("u2", lat)])
    (u1, c2), (u2, _) = read_lattices(path, compact=True)
    assert (u1, u2) == ("u1", "u2") and isinstance(c2, CompactLattice)
    for f in ("src", "dst", "word", "tid_index", "tids", "final_index", "final_tids"):
        np.testing.assert_array_equal(getattr(c2, f), getattr(c, f))
    for f in ("graph", "acoustic", "final_graph", "final_acoustic"):
        np.testing.assert_allclose(getattr(c2, f), getattr(c, f), rtol=1e-5)
    (_, as_lattice), _ = read_lattices(path)
    assert isinstance(as_lattice, Lattice)
    assert as_lattice.best_path(1 / SCALE) == lat.best_path(1 / SCALE)
    with gzip.open(path, "wt") as f:
        f.write("u1\n0 1 5 1.0,2.0,3_4\n1 0.5,x,\n\n")
    with pytest.raises(InputError, match=r"lat\.1\.gz:3: lattice u1"):
        list(read_lattices(path))


def test_memory_limit_shrinks_the_beam():
    """Strings past max_mem: the construction starts again at a smaller beam (Kaldi's
    --max-mem) and still ends, at worst with the best path alone."""
    lat = _random_lattice(np.random.default_rng(3), n=10, arcs=26)
    full, beam = determinize_lattice(lat, SCALE, beam=8.0)
    assert beam == 8.0
    small, beam = determinize_lattice(lat, SCALE, beam=8.0, max_mem=16)
    assert beam < 8.0 and small.num_arcs <= full.num_arcs
    assert small.to_lattice().best_path(1 / SCALE) == lat.best_path(1 / SCALE)


def test_an_infinite_beam_past_the_limits_and_a_lattice_without_final_states():
    lat = _random_lattice(np.random.default_rng(3), n=10, arcs=26)
    c, beam = determinize_lattice(lat, SCALE, beam=np.inf, max_mem=16)  # no retries
    assert beam == np.inf and c.to_lattice().best_path(1 / SCALE) == lat.best_path(1 / SCALE)
    dead = Lattice(lat.src, lat.dst, lat.ilabel, lat.olabel, lat.graph, lat.acoustic,
                   np.full(lat.num_states, np.inf, np.float32))  # fmt: skip
    c, _ = determinize_lattice(dead, SCALE, beam=8.0, max_mem=16)
    assert c.num_states == 0
