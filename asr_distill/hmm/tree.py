"""Phonetic decision trees for triphone GMM-HMMs: Kaldi's build-tree (and the
gmm-init-model statistics per leaf).

The parts, each its own module, are re-exported here:

* :mod:`~asr_distill.hmm.tree_stats`: ``accumulate_tree_stats`` (acc-tree-stats) and
  the Gaussian objective,
* :mod:`~asr_distill.hmm.questions`: roots, questions, ``cluster_phones``,
* :mod:`~asr_distill.hmm.context_dep`: the ``Tree`` (EventMap) and Kaldi's binary
  ContextDependency format,

and this module grows the tree: :func:`build_tree` and :func:`leaf_stats`.

Algorithm (Kaldi's BuildTree):

1. *Stub*: one leaf per root of ``roots.int`` (``shared``) or per root and pdf-class
   (``not-shared``); the top of the tree is a table on the central phone.
2. *Split*: greedily split the leaf whose best question gains most log-likelihood,
   ``gain = L(yes) + L(no) - L(yes ∪ no)`` with ``L`` the diagonal-Gaussian objective
   of :func:`~asr_distill.hmm.tree_stats.gauss_objf`, over all keys (left, centre,
   right phone and pdf-class) and their questions, while the gain exceeds ``thresh``
   and there are fewer than ``num_leaves`` leaves. Both sides of a split need
   ``min_count`` frames. ``not-split`` roots keep their stub leaves.
3. *Post-cluster*: within each stub leaf, merge leaves bottom-up (cheapest merge first)
   while the merge costs less than ``cluster_thresh`` (negative: the smallest split gain
   accepted in step 2), then renumber the leaves ``0..num_pdfs-1``.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asr_distill.hmm.context_dep import (
    ConstantNode,
    Node,
    SplitNode,
    TableNode,
    Tree,
    TreeBuildInfo,
)
from asr_distill.hmm.questions import (
    Questions,
    Root,
    cluster_phones,
    make_questions,
    read_questions,
    read_roots,
)
from asr_distill.hmm.tree_stats import (
    DEFAULT_VAR_FLOOR,
    PDF_CLASS_KEY,
    TreeStats,
    accumulate_tree_stats,
    gauss_objf,
)

__all__ = [
    "PDF_CLASS_KEY",
    "Tree",
    "TreeBuildInfo",
    "TreeStats",
    "accumulate_tree_stats",
    "build_tree",
    "cluster_phones",
    "gauss_objf",
    "leaf_stats",
    "make_questions",
    "read_questions",
    "read_roots",
]

log = logging.getLogger(__name__)


def _objf(x: np.ndarray, dim: int, var_floor: float) -> np.ndarray:
    """gauss_objf of packed stats ``(..., 1 + 2D)`` = [count, sum, sumsq]."""
    return gauss_objf(x[..., 0], x[..., 1 : 1 + dim], x[..., 1 + dim :], var_floor)


@dataclass(eq=False)
class _Grow:
    """A node of a growing subtree (Kaldi's DecisionTreeSplitter)."""

    leaf: int
    idx: np.ndarray  # (n,) event indices
    gain: float = 0.0  # best split gain, 0 if none
    key: int = 0
    yes_set: tuple[int, ...] = ()
    yes: _Grow | None = None
    no: _Grow | None = None


class _Splitter:
    """Finds the best question for a set of events."""

    def __init__(
        self,
        stats: TreeStats,
        questions: Questions,
        min_count: float,
        var_floor: float,
    ):
        self.events = stats.events
        self.packed = np.concatenate(
            [stats.counts[:, None], stats.sums, stats.sumsqs], axis=1
        )  # (E, 1 + 2D)
        self.dim = stats.dim
        self.min_count = max(float(min_count), 0.0)
        self.var_floor = var_floor
        self.keys: list[tuple[int, int, list[tuple[int, ...]], np.ndarray]] = []
        for key in sorted(questions):
            qs = [tuple(sorted(set(int(v) for v in q))) for q in questions[key] if len(q)]
            if not qs:
                continue
            col = stats.column(key)
            if not 0 <= col <= stats.context_width:
                raise ValueError(f"question key {key} outside the context window")
            top = max(max(max(q) for q in qs), int(stats.events[:, col].max(initial=0)))
            qmat = np.zeros((len(qs), top + 1))  # (nq, V) question membership
            for i, q in enumerate(qs):
                qmat[i, list(q)] = 1.0
            self.keys.append((key, col, qs, qmat))

    def best(self, node: _Grow) -> None:
        """Set node.gain/key/yes_set to the best admissible split (gain 0: none)."""
        node.gain = 0.0
        idx = node.idx
        if len(idx) < 2:
            return
        x = self.packed[idx]  # (n, 1 + 2D)
        total = x.sum(axis=0)  # (1 + 2D,)
        base = float(_objf(total, self.dim, self.var_floor))
        for key, col, qs, qmat in self.keys:
            vals = self.events[idx, col]
            order = np.argsort(vals, kind="stable")
            sv = vals[order]
            starts = np.flatnonzero(np.concatenate([[True], sv[1:] != sv[:-1]]))
            if len(starts) < 2:
                continue  # one value: no question can split
            per_value = np.add.reduceat(x[order], starts, axis=0)  # (nv, 1 + 2D)
            yes = qmat[:, sv[starts]] @ per_value  # (nq, 1 + 2D)
            no = total - yes
            ok = (yes[:, 0] >= self.min_count) & (no[:, 0] >= self.min_count)
            ok &= (yes[:, 0] > 0) & (no[:, 0] > 0)
            if not ok.any():
                continue
            gains = _objf(yes, self.dim, self.var_floor) + _objf(no, self.dim, self.var_floor)
            gains = np.where(ok, gains - base, -np.inf)
            i = int(np.argmax(gains))
            if gains[i] > node.gain:
                node.gain, node.key, node.yes_set = float(gains[i]), key, qs[i]

    def split(self, node: _Grow, new_leaf: int) -> None:
        """Split a leaf by its best question: yes keeps the leaf id, no gets ``new_leaf``."""
        vals = self.events[node.idx, self.key_col(node.key)]
        mask = np.isin(vals, node.yes_set)
        node.yes = _Grow(node.leaf, node.idx[mask])
        node.no = _Grow(new_leaf, node.idx[~mask])
        node.idx = node.idx[:0]
        self.best(node.yes)
        self.best(node.no)

    def key_col(self, key: int) -> int:
        return next(col for k, col, _, _ in self.keys if k == key)


def _leaves(node: _Grow) -> list[_Grow]:
    if node.yes is None or node.no is None:
        return [node]
    return _leaves(node.yes) + _leaves(node.no)


def _cluster_bottom_up(
    x: np.ndarray, thresh: float, dim: int, var_floor: float
) -> tuple[list[int], float]:
    """Greedy bottom-up merging of clusters ``x`` (k, 1 + 2D) while the cheapest merge
    costs less than ``thresh`` (Kaldi's ClusterBottomUp). Returns the representative
    (lowest index of its cluster) of each input and the total objf lost."""
    k = len(x)
    rep = list(range(k))
    x = x.copy()
    objf = _objf(x, dim, var_floor)  # (k,)
    cost = np.full((k, k), np.inf)
    for i in range(k):
        cost[i, i + 1 :] = objf[i] + objf[i + 1 :] - _objf(x[i] + x[i + 1 :], dim, var_floor)
    loss = 0.0
    alive = np.ones(k, dtype=bool)
    while k > 1:
        flat = int(np.argmin(cost))
        i, j = divmod(flat, cost.shape[1])
        # (a relative margin keeps roundoff from undoing the smallest split exactly)
        if not cost[i, j] < thresh - 1e-9 * abs(thresh):
            break
        loss += float(cost[i, j])
        x[i] += x[j]
        objf[i] = _objf(x[i], dim, var_floor)
        alive[j] = False
        cost[j, :] = np.inf
        cost[:, j] = np.inf
        others = np.flatnonzero(alive)
        others = others[others != i]
        merged = objf[i] + objf[others] - _objf(x[i] + x[others], dim, var_floor)
        lo, hi = np.minimum(i, others), np.maximum(i, others)
        cost[lo, hi] = merged
        for m, r in enumerate(rep):
            if r == j:
                rep[m] = i
        k -= 1
    return rep, loss


def build_tree(
    stats: TreeStats,
    roots: Sequence[Root],
    questions: Questions,
    *,
    num_leaves: int,
    phone2num_pdf_classes: Sequence[int],
    min_count: float = 100.0,
    thresh: float = 300.0,
    cluster_thresh: float = -1.0,
    var_floor: float = DEFAULT_VAR_FLOOR,
) -> Tree:
    """Build a phonetic decision tree, like Kaldi's ``build-tree`` (see module docs).

    Args:
        stats: tree stats (:func:`accumulate_tree_stats`).
        roots: ``(phones, shared, split)`` per root (:func:`read_roots`): the phones of a
            root share its subtree; ``shared`` lets their pdf-classes share leaves (the
            tree may ask about the pdf-class), otherwise each pdf-class gets its own
            stub leaf; ``split=False`` keeps the stub leaves unsplit.
        questions: event key -> questions (value sets), e.g. :func:`make_questions`;
            keys ``0..N-1`` are window positions, -1 the pdf-class.
        num_leaves: maximum number of leaves after splitting, stub leaves included
            (Kaldi's ``--max-leaves``); post-clustering then lowers it.
        phone2num_pdf_classes: number of pdf-classes per phone (index = phone), e.g.
            ``HmmTopology.get_phone_to_num_pdf_classes()``.
        min_count: least frames on each side of a split (default 100; Kaldi has no such
            limit, it relies on ``thresh``).
        thresh: least log-likelihood gain of a split (default 300, Kaldi's ``--thresh``).
        cluster_thresh: post-clustering merges leaves of one stub leaf while the merge
            loses less than this; negative (default -1): the smallest split gain
            accepted, as Kaldi; 0: no post-clustering.
        var_floor: variance floor of the Gaussian objective (default 0.01).

    Returns:
        The tree; every root has at least one leaf, even without stats. Its
        ``build_info`` holds the leaf counts and gains.
    """
    width, center = stats.context_width, stats.central_position
    # ---- stub: leaves per root (and pdf-class when not shared) ------------------------
    root_of_phone: dict[int, int] = {}
    stub_base, stub_size = [], []
    num_stub = 0
    for r, (phones, shared, _split) in enumerate(roots):
        if not phones:
            raise ValueError(f"root {r} has no phones")
        for p in phones:
            if p in root_of_phone or p <= 0:
                raise ValueError(f"phone {p} is in more than one root (or not a phone)")
            if p >= len(phone2num_pdf_classes) or phone2num_pdf_classes[p] <= 0:
                raise ValueError(f"phone {p} has no pdf-classes in phone2num_pdf_classes")
            root_of_phone[p] = r
        size = 1 if shared else max(int(phone2num_pdf_classes[p]) for p in phones)
        stub_base.append(num_stub)
        stub_size.append(size)
        num_stub += size
    max_phone = max(root_of_phone)
    phone_root = np.full(max(max_phone, int(stats.events[:, center].max(initial=0))) + 1, -1)
    for p, r in root_of_phone.items():
        phone_root[p] = r
    ev_root = phone_root[stats.events[:, center]]  # (E,)
    if (ev_root < 0).any():
        missing = sorted(set(stats.events[ev_root < 0, center].tolist()))
        raise ValueError(f"phones with stats but no root: {missing}")
    shared_arr = np.array([bool(s) for _, s, _ in roots])
    pdf_class = stats.events[:, width]
    offset = np.where(shared_arr[ev_root], 0, pdf_class)
    if ((offset < 0) | (offset >= np.array(stub_size)[ev_root])).any():
        raise ValueError("stats have a pdf-class beyond the phone's number of pdf-classes")
    ev_stub = np.array(stub_base)[ev_root] + offset  # (E,)

    splitter = _Splitter(stats, questions, min_count, var_floor)
    order = np.argsort(ev_stub, kind="stable")
    bounds = np.searchsorted(ev_stub[order], np.arange(num_stub + 1))
    stubs = [_Grow(s, order[bounds[s] : bounds[s + 1]]) for s in range(num_stub)]
    splittable = np.zeros(num_stub, dtype=bool)
    for r, (_, _, split) in enumerate(roots):
        splittable[stub_base[r] : stub_base[r] + stub_size[r]] = split

    # ---- greedy splitting ------------------------------------------------------------
    heap: list[tuple[float, int, _Grow]] = []
    for s, node in enumerate(stubs):
        if splittable[s]:
            splitter.best(node)
            if node.gain > 0:
                heap.append((-node.gain, node.leaf, node))
    heapq.heapify(heap)
    n_leaves, n_splits, total_gain, smallest = num_stub, 0, 0.0, np.inf
    while heap and n_leaves < num_leaves and -heap[0][0] > thresh:
        neg_gain, _, node = heapq.heappop(heap)
        total_gain -= neg_gain
        smallest = min(smallest, -neg_gain)
        splitter.split(node, n_leaves)
        n_leaves += 1
        n_splits += 1
        for child in (node.yes, node.no):
            if child is not None and child.gain > 0:
                heapq.heappush(heap, (-child.gain, child.leaf, child))
    num_split_leaves = n_leaves
    log.info("build-tree: %d stub leaves, %d splits, %d leaves", num_stub, n_splits, n_leaves)

    # ---- post-clustering within each stub leaf --------------------------------------
    if cluster_thresh < 0:
        cluster_thresh = float(smallest) if n_splits else 0.0
    rep = np.arange(n_leaves)
    n_merged, loss = 0, 0.0
    if cluster_thresh > 0:
        for stub in stubs:
            leaves = [g for g in _leaves(stub) if len(g.idx)]
            if len(leaves) < 2:
                continue
            x = np.stack([splitter.packed[g.idx].sum(axis=0) for g in leaves])  # (k, 1 + 2D)
            reps, lost = _cluster_bottom_up(x, cluster_thresh, stats.dim, var_floor)
            for g, r in zip(leaves, reps, strict=True):
                rep[g.leaf] = leaves[r].leaf
            n_merged += len(leaves) - len(set(reps))
            loss += lost
    used = np.unique(rep)
    renumber = np.full(n_leaves, -1)
    renumber[used] = np.arange(len(used))
    final = renumber[rep]  # (n_leaves,) old leaf -> new pdf-id
    log.info("build-tree: post-clustering removed %d leaves, %d remain", n_merged, len(used))

    # ---- the EventMap ----------------------------------------------------------------
    def convert(g: _Grow) -> Node:
        if g.yes is None or g.no is None:
            return ConstantNode(int(final[g.leaf]))
        return SplitNode(g.key, g.yes_set, convert(g.yes), convert(g.no), g.gain)

    table: list[Node | None] = [None] * (max_phone + 1)
    for r, (phones, shared, _) in enumerate(roots):
        subs = [convert(stubs[stub_base[r] + i]) for i in range(stub_size[r])]
        sub = subs[0] if shared else TableNode(PDF_CLASS_KEY, list(subs))
        for p in phones:
            table[p] = sub
    info = TreeBuildInfo(
        num_stub_leaves=num_stub,
        num_leaves_split=num_split_leaves,
        num_splits=n_splits,
        split_gain=total_gain,
        smallest_split_gain=float(smallest) if n_splits else 0.0,
        cluster_thresh=cluster_thresh,
        num_merged=n_merged,
        cluster_loss=loss,
    )
    return Tree(TableNode(center, table), len(used), width, center, info)


def leaf_stats(
    tree: Tree, stats: TreeStats, var_floor: float = DEFAULT_VAR_FLOOR
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled Gaussian per pdf-id, to initialise one Gaussian per leaf (Kaldi's
    gmm-init-model).

    Returns:
        ``counts (P,)``, ``means (P, D)``, ``vars (P, D)`` (floored at ``var_floor``).
        A pdf without frames gets count 0 and the mean and variance of all the data
        (Kaldi warns and does likewise).
    """
    leaves = tree.leaves_of(stats.events)  # (E,)
    ok = leaves >= 0
    if not ok.all():
        log.warning("leaf_stats: %d events have no pdf in the tree", int((~ok).sum()))
    n_pdfs, dim = tree.num_pdfs, stats.dim
    counts = np.bincount(leaves[ok], weights=stats.counts[ok], minlength=n_pdfs)  # (P,)
    sums = np.zeros((n_pdfs, dim))
    sumsqs = np.zeros((n_pdfs, dim))
    np.add.at(sums, leaves[ok], stats.sums[ok])
    np.add.at(sumsqs, leaves[ok], stats.sumsqs[ok])
    total = max(float(stats.counts.sum()), 1e-10)
    gmean = stats.sums.sum(axis=0) / total
    gvar = stats.sumsqs.sum(axis=0) / total - gmean**2
    empty = counts <= 0
    if empty.any():
        log.warning("leaf_stats: %d pdfs have no data; using global stats", int(empty.sum()))
    n = np.where(empty, 1.0, counts)[:, None]
    means = np.where(empty[:, None], gmean, sums / n)  # (P, D)
    var = np.where(empty[:, None], gvar, sumsqs / n - means**2)
    return counts, means, np.maximum(var, var_floor)
