"""Decision trees: stats accumulation, questions, tree building and Kaldi's format."""

from __future__ import annotations

import itertools
import re

import kaldi_hmm_gmm as k
import numpy as np
import pytest

from asr_distill.errors import InputError
from asr_distill.hmm.tree import (
    Tree,
    TreeStats,
    accumulate_tree_stats,
    build_tree,
    cluster_phones,
    gauss_objf,
    leaf_stats,
    make_questions,
    read_questions,
    read_roots,
)


def topo_text(groups: dict[tuple[int, ...], int]) -> str:
    """Kaldi topology: left-to-right HMMs with n emitting states per phone group."""
    out = ["<Topology>"]
    for phones, n in groups.items():
        out += ["<TopologyEntry>", "<ForPhones>", " ".join(map(str, phones)), "</ForPhones>"]
        for s in range(n):
            trans = f"<Transition> {s} 0.75 <Transition> {s + 1} 0.25"
            out.append(f"<State> {s} <PdfClass> {s} {trans} </State>")
        out += [f"<State> {n} </State>", "</TopologyEntry>"]
    out.append("</Topology>")
    return "\n".join(out) + "\n"


def make_topo(groups: dict[tuple[int, ...], int]) -> k.HmmTopology:
    topo = k.HmmTopology()
    topo.read(topo_text(groups))
    return topo


def analytic_stats(events, means, var=1.0, count=200.0) -> TreeStats:
    """Exact stats of ``count`` frames per event with the given means and variance."""
    ev = np.asarray(events, dtype=np.int32)
    mu = np.asarray(means, dtype=np.float64)  # (E, D)
    n = np.full(len(ev), count)
    return TreeStats(ev, n, n[:, None] * mu, n[:, None] * (mu * mu + var))


# --- the synthetic triphone set -----------------------------------------------------
# phone 1 = silence (5 pdf-classes), 2..6 speech phones (3 pdf-classes); 6 has no data.
PHONES = [1, 2, 3, 4, 5, 6]
NUM_CLASSES = {1: 5, 2: 3, 3: 3, 4: 3, 5: 3, 6: 3}
ROOTS = [
    ([1], False, False),  # not-shared not-split
    ([2, 3], True, True),  # shared split: one root for two phones
    ([4], False, True),  # not-shared split
    ([5], True, True),
    ([6], True, True),  # no stats at all
]


def synthetic_stats(seed: int = 0) -> TreeStats:
    rng = np.random.default_rng(seed)
    events, means = [], []
    for c in [1, 2, 3, 4, 5]:
        for lc, r in itertools.product([0, *PHONES], repeat=2):
            for pc in range(NUM_CLASSES[c]):
                mu = np.array([2.0 * c, 1.5 * pc, 0.0]) + 0.01 * rng.standard_normal(3)
                if c != 1:
                    mu[2] += 3.0 * (r in (2, 3, 4)) + 1.0 * (lc in (5, 6))
                events.append((lc, c, r, pc))
                means.append(mu)
    return analytic_stats(events, means)


@pytest.fixture(scope="module")
def synthetic_tree() -> tuple[Tree, TreeStats, dict]:
    stats = synthetic_stats()
    p2n = [0] + [NUM_CLASSES[p] for p in PHONES]
    qs = make_questions(stats, [[p] for p in PHONES], [[2, 3, 4], [5, 6]], p2n)
    tree = build_tree(
        stats, ROOTS, qs, num_leaves=30, phone2num_pdf_classes=p2n, min_count=400, thresh=1.0
    )
    return tree, stats, qs


def walk_dump(dump: str, event: tuple[int, ...]) -> int:
    """Evaluate a Tree.dump() text on an event, independently of the Tree code."""
    col = {"left": 0, "centre": 1, "right": 2, "pdf-class": 3}
    lines = [ln for ln in dump.splitlines() if not ln.startswith("#")]
    nodes = [((len(ln) - len(ln.lstrip())) // 2, ln.strip()) for ln in lines]
    i = 0
    while True:
        depth, text = nodes[i]
        body = text.split(": ", 1)[1]
        if body.startswith("leaf "):
            return int(body.split()[1])
        kids = [j for j in range(i + 1, len(nodes)) if nodes[j][0] == depth + 1]
        kids = [j for j in kids if all(nodes[m][0] > depth for m in range(i + 1, j))]
        if body.startswith("if "):
            key, values = re.match(r"if (\S+) in \{([^}]*)\}", body).groups()
            yes = event[col[key]] in {int(v) for v in values.split()}
            i = kids[0] if yes else kids[1]
        else:
            for j in kids:
                key, values = re.match(r"(\S+) in \{([^}]*)\}", nodes[j][1]).groups()
                if event[col[key]] in {int(v) for v in values.split()}:
                    i = j
                    break
            else:
                raise KeyError(event)


def test_tree_matches_kaldi_context_dependency(synthetic_tree):
    tree, _, _ = synthetic_tree
    ctx = tree.to_context_dependency()
    assert ctx.num_pdfs == tree.num_pdfs
    assert (ctx.context_width, ctx.central_position) == (3, 1)
    assert str(ctx) == tree.to_text()
    dump = tree.dump()
    seen = set()
    for lc, c, r in itertools.product([0, *PHONES], PHONES, [0, *PHONES]):
        for pc in range(NUM_CLASSES[c]):
            leaf = tree.leaf((lc, c, r, pc))
            assert ctx.compute([lc, c, r], pc) == (True, leaf)
            assert walk_dump(dump, (lc, c, r, pc)) == leaf
            seen.add(leaf)
    assert seen == set(range(tree.num_pdfs))  # leaves are dense 0..num_pdfs-1
    events = np.array(
        [(lc, c, r, pc) for lc, c, r in itertools.product([0, 2], PHONES, [3]) for pc in range(3)]
    )
    assert tree.leaves_of(events).tolist() == [tree.leaf(e) for e in events]

    topo = make_topo({(1,): 5, (2, 3, 4, 5, 6): 3})
    tm = k.TransitionModel(ctx, topo)
    assert tm.num_pdfs == tree.num_pdfs


def test_bytes_round_trip(synthetic_tree, tmp_path):
    tree, _, _ = synthetic_tree
    data = tree.to_bytes()
    ctx = tree.to_context_dependency()
    assert bytes(b & 0xFF for b in ctx.__getstate__()[0]) == data
    back = Tree.from_bytes(data)
    assert back.to_bytes() == data and back.num_pdfs == tree.num_pdfs
    tree.write(tmp_path / "tree")
    assert Tree.read(tmp_path / "tree").to_bytes() == data
    mono = k.monophone_context_dependency([1, 2, 3], [0, 3, 3, 3])
    mono_bytes = bytes(b & 0xFF for b in mono.__getstate__()[0])
    assert Tree.from_bytes(mono_bytes).to_bytes() == mono_bytes
    with pytest.raises(InputError):
        Tree.from_bytes(mono_bytes[:-5])


def test_roots_structure_and_empty_phone(synthetic_tree):
    tree, stats, _ = synthetic_tree
    # not-shared not-split silence: one leaf per pdf-class, independent of context.
    sil = {tree.leaf((lc, 1, r, pc)) for lc in (0, 2) for r in (0, 3) for pc in range(5)}
    assert len(sil) == 5
    # phone 6 has no stats but a shared root: exactly one pdf for all its pdf-classes.
    p6 = {tree.leaf((lc, 6, r, pc)) for lc in (0, 2, 5) for r in (0, 4) for pc in range(3)}
    assert len(p6) == 1
    # phones 2 and 3 share a root (one subtree, split on the centre phone as their
    # means differ); its leaves are its own.
    assert tree.root.table[2] is tree.root.table[3]
    leaves = {
        c: {tree.leaf((lc, c, r, pc)) for lc in PHONES for r in PHONES for pc in range(3)}
        for c in (2, 3, 4, 5)
    }
    assert not leaves[2] & leaves[3]
    assert not (leaves[2] | leaves[3]) & (sil | p6 | leaves[4] | leaves[5])
    assert len(leaves[4]) >= 3  # not-shared: at least one leaf per pdf-class
    counts, means, variances = leaf_stats(tree, stats)
    assert counts.shape == (tree.num_pdfs,) and means.shape == variances.shape
    assert counts.sum() == pytest.approx(stats.counts.sum())
    assert counts[next(iter(p6))] == 0
    # split leaves have >= min_count frames; only the empty root is below.
    assert int((counts < 400).sum()) == 1


def test_num_leaves_and_post_clustering():
    stats = synthetic_stats(1)
    p2n = [0] + [NUM_CLASSES[p] for p in PHONES]
    qs = make_questions(stats, [[p] for p in PHONES], [[2, 3, 4], [5, 6]], p2n)
    kw = dict(phone2num_pdf_classes=p2n, min_count=200, thresh=1e-3)
    plain = build_tree(stats, ROOTS, qs, num_leaves=60, cluster_thresh=0.0, **kw)
    assert plain.num_pdfs == 60 == plain.build_info.num_leaves_split
    clustered = build_tree(stats, ROOTS, qs, num_leaves=60, **kw)
    info = clustered.build_info
    assert info.num_leaves_split == 60
    assert info.num_merged > 0 and clustered.num_pdfs == 60 - info.num_merged
    assert info.cluster_thresh == pytest.approx(info.smallest_split_gain)
    assert 0 < info.cluster_loss < info.num_merged * info.cluster_thresh
    counts, _, _ = leaf_stats(plain, stats)
    assert (np.sort(counts)[1:] >= 200).all()  # all but phone 6's empty root
    # no more leaves than stubs + splits: a threshold stops splitting.
    few = build_tree(stats, ROOTS, qs, num_leaves=60, cluster_thresh=0.0, **{**kw, "thresh": 1e9})
    assert few.num_pdfs == few.build_info.num_stub_leaves == 5 + 1 + 3 + 1 + 1


def test_split_gain_matches_hand_computation():
    x_a = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0]])  # frames with right context 3
    x_b = np.array([[5.0, 0.0], [7.0, 1.0]])  # frames with right context 4
    events, counts, sums, sumsqs = [], [], [], []
    for r, x in ((3, x_a), (4, x_b)):
        events.append((0, 2, r, 0))
        counts.append(len(x))
        sums.append(x.sum(0))
        sumsqs.append((x * x).sum(0))
    stats = TreeStats(
        np.array(events, np.int32), np.array(counts, float), np.array(sums), np.array(sumsqs)
    )

    def loglik(x):  # ML diagonal Gaussian of the frames, by hand
        n, d = x.shape
        return -0.5 * n * (d * (1 + np.log(2 * np.pi)) + np.log(x.var(axis=0)).sum())

    expected = loglik(x_a) + loglik(x_b) - loglik(np.concatenate([x_a, x_b]))
    assert gauss_objf(stats.counts, stats.sums, stats.sumsqs) == pytest.approx(
        [loglik(x_a), loglik(x_b)]
    )
    tree = build_tree(
        stats,
        [([2], True, True)],
        {2: [[3]], 0: [[0]]},
        num_leaves=2,
        phone2num_pdf_classes=[0, 1, 1],
        min_count=0,
        thresh=0.0,
    )
    split = tree.root.table[2]
    assert split.key == 2 and split.yes_set == (3,)
    assert split.gain == pytest.approx(expected)
    assert tree.build_info.split_gain == pytest.approx(expected)
    assert tree.num_pdfs == 2


def test_split_follows_informative_context_only():
    # the mean depends on whether the right phone is in {2, 3}; the left phone is noise-free.
    events, means = [], []
    for lc, r in itertools.product([2, 3, 4, 5], repeat=2):
        events.append((lc, 2, r, 0))
        means.append([4.0 if r in (2, 3) else 0.0, 1.0])
    stats = analytic_stats(events, means)
    qs = {key: [[2, 3], [2, 4], [4, 5], [3, 5]] for key in (0, 1, 2)}
    tree = build_tree(
        stats, [([2], True, True)], qs, num_leaves=10, phone2num_pdf_classes=[0, 1, 1], thresh=1.0
    )
    split = tree.root.table[2]
    assert split.key == 2 and split.yes_set in ((2, 3), (4, 5))
    assert isinstance(split.yes, type(split.no)) and not hasattr(split.yes, "key")
    assert tree.num_pdfs == 2
    assert tree.leaf((5, 2, 2, 0)) == tree.leaf((2, 2, 3, 0)) != tree.leaf((2, 2, 4, 0))


def test_cluster_phones_groups_similar_phones():
    events, means = [], []
    centre_mean = {1: 0.0, 2: 0.3, 3: 10.0, 4: 10.4, 5: 20.0, 6: 0.1}
    for c, mu in centre_mean.items():
        events.append((0, c, 0, 1))
        means.append([mu, -mu])
    stats = analytic_stats(events, means)
    # phone 6 is a word-position variant of phone 1: pooled with it.
    qs = cluster_phones(stats, [[1, 6], [2], [3], [4], [5]], pdf_class=1)
    assert [1, 2, 6] in qs and [3, 4] in qs and [1, 2, 3, 4, 5, 6] in qs
    assert [1] not in qs and [3, 4, 5] in qs
    full = make_questions(stats, [[1, 6], [2], [3], [4], [5]], [[1, 3, 5]], [0, 3, 3, 5, 3, 3, 3])
    assert set(full) == {-1, 0, 1, 2}
    assert full[-1] == [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3]]
    assert [1, 3, 5] in full[0] and full[0] == full[2]


def _tids(tm: k.TransitionModel, phone: int, state: int) -> tuple[int, int]:
    """(self-loop tid, forward tid) of an HMM state."""
    for ts, t in enumerate(tm.tuples, 1):
        if t.__getstate__()[:2] == (phone, state):
            first = tm.state2id[ts]
            return first, first + 1
    raise KeyError((phone, state))


@pytest.mark.parametrize("reordered", [False, True])
def test_accumulate_tree_stats(reordered):
    topo = make_topo({(1, 2, 3): 3})
    ctx = k.monophone_context_dependency([1, 2, 3], topo.get_phone_to_num_pdf_classes())
    tm = k.TransitionModel(ctx, topo)
    rng = np.random.default_rng(0)
    # phones 1 2 2 3 with per-state durations
    plan = [(1, [2, 1, 3]), (2, [1, 1, 1]), (2, [2, 2, 1]), (3, [1, 3, 2])]
    ali, expected_events = [], []
    for i, (ph, durs) in enumerate(plan):
        left = plan[i - 1][0] if i > 0 else 0
        right = plan[i + 1][0] if i + 1 < len(plan) else 0
        for s, d in enumerate(durs):
            loop, fwd = _tids(tm, ph, s)
            ali += [fwd] + [loop] * (d - 1) if reordered else [loop] * (d - 1) + [fwd]
            expected_events += [(left, ph, right, s)] * d
    feats = rng.standard_normal((len(ali), 2))
    stats = accumulate_tree_stats(tm, {"u1": ali, "u2": ali[:4]}, {"u1": feats, "u2": feats})
    expected: dict[tuple, list] = {}
    for ev, x in zip(expected_events, feats, strict=True):
        expected.setdefault(ev, []).append(x)
    assert [tuple(e) for e in stats.events] == sorted(expected)
    for e, c, s, q in zip(stats.events, stats.counts, stats.sums, stats.sumsqs, strict=True):
        xs = np.array(expected[tuple(e)])
        assert c == len(xs)
        np.testing.assert_allclose(s, xs.sum(0))
        np.testing.assert_allclose(q, (xs**2).sum(0))

    ci = accumulate_tree_stats(tm, {"u1": ali}, {"u1": feats}, ci_phones=[2])
    assert {tuple(e[:3]) for e in ci.events} == {(0, 1, 2), (0, 2, 0), (2, 3, 0)}
    merged = stats.merge(ci)
    assert merged.counts.sum() == stats.counts.sum() + ci.counts.sum()
    assert len(merged.events) == len({*map(tuple, stats.events), *map(tuple, ci.events)})


def test_stats_save_load(tmp_path):
    stats = synthetic_stats()
    stats.save(tmp_path / "s.npz")
    back = TreeStats.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.events, stats.events)
    np.testing.assert_array_equal(back.sumsqs, stats.sumsqs)
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(InputError):
        TreeStats.load(tmp_path / "bad.npz")


def test_read_roots_and_questions(tmp_path):
    roots = tmp_path / "roots.int"
    roots.write_text("shared split 1 2 3\nnot-shared not-split 4\n")
    assert read_roots(roots) == [([1, 2, 3], True, True), ([4], False, False)]
    roots.write_text("shared split 1 2\nshared maybe 3\n")
    with pytest.raises(InputError, match=r"roots.int:2"):
        read_roots(roots)
    roots.write_text("shared split 1 2\nshared split 2\n")
    with pytest.raises(InputError, match=r"roots.int:2.*more than one root"):
        read_roots(roots)
    qfile = tmp_path / "sets.int"
    qfile.write_text("3 1\n\n2\n")
    assert read_questions(qfile) == [[1, 3], [2]]
    qfile.write_text("1 2\n1 x\n")
    with pytest.raises(InputError, match=r"sets.int:2"):
        read_questions(qfile)
