"""Lattice generation over HCLG, and what a lattice gives without decoding again: the
best path at any LM weight and word insertion penalty (Kaldi's score.sh sweep), the
lattice oracle WER, Kaldi's text lattice archives.

No pip-installable decoder returns lattices at the cost of a one-best decode
(kaldi-hmm-gmm's ``LatticeFasterDecoder`` returns the best path only; kaldi-decoder's
``LatticeSimpleDecoder`` has no max-active, and costs 4x a one-best pass: README,
bench/RESULTS.md). This module is a token-passing beam search in the manner of
Kaldi's ``LatticeFasterDecoder``, compiled with numba: per frame, the emitting arcs of
the tokens within the cut-off (beam, max-active, min-active, with Kaldi's adaptive
beam), then the epsilon closure; every arc a surviving token takes is a lattice link
carrying its graph cost and its acoustic cost. At the end the links are pruned with
the lattice beam by forward-backward (Viterbi) costs, as Kaldi's
``PruneForwardLinks`` does, and the states renumbered in topological order. The
lattice is state level (transition-ids in, words out); ``decode`` then determinizes it
(:mod:`asr_distill.decode.determinize`, Kaldi's ``lattice-determinize-pruned``, which
has no Python binding).

Costs: a link's ``graph`` cost is the HCLG weight (LM, pronunciation, transition),
its ``acoustic`` cost the negated, unscaled log-likelihood, as Kaldi stores lattices;
a path's cost at LM weight ``w`` and penalty ``p`` is ``graph + acoustic / w + p x
words`` (``lattice-scale --inv-acoustic-scale=w``, ``lattice-add-penalty``).
"""

from __future__ import annotations

import dataclasses
import gzip
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import numba
import numpy as np

from asr_distill.errors import InputError

_FST_MAGIC = 2125659606
_INF = np.float64(np.inf)


@dataclasses.dataclass(frozen=True)
class Graph:
    """HCLG as arrays, laid out as OpenFst's arcs for the search's memory traffic:
    ``arcs`` (N, 4) int32 rows (ilabel, olabel, weight's float32 bits, nextstate),
    ``weights`` the same buffer viewed as float32; state s's emitting arcs (ilabel a
    transition-id) are rows ``index[s, 0]:index[s, 1]``, its input-epsilon arcs
    ``index[s, 1]:index[s + 1, 0]``; ``final`` the final costs (inf where not final)."""

    start: int
    final: np.ndarray  # (S,) float64
    index: np.ndarray  # (S + 1, 2) int64
    arcs: np.ndarray  # (N, 4) int32

    @property
    def weights(self) -> np.ndarray:
        return self.arcs.view(np.float32)

    @property
    def num_states(self) -> int:
        return len(self.final)

    @property
    def max_ilabel(self) -> int:
        return int(self.arcs[:, 0].max()) if len(self.arcs) else 0


@numba.njit(cache=True)
def _parse_states(words, nstates):  # pragma: no cover - compiled
    """Walk a binary VectorFst's states, as int32 words: float32 final, int64 arc
    count, then per arc int32 ilabel, int32 olabel, float32 weight, int32 nextstate.
    Returns each state's first arc's word offset, arc count, and the words read."""
    narcs = np.empty(nstates, np.int64)
    arc_offset = np.empty(nstates, np.int64)
    o = 0
    for s in range(nstates):
        n = np.int64(words[o + 1]) & 0xFFFFFFFF | np.int64(words[o + 2]) << 32
        narcs[s] = n
        arc_offset[s] = o + 3
        o += 3 + 4 * n
    return narcs, arc_offset, o


@numba.njit(cache=True)
def _split_arcs(words, narcs, arc_offset):  # pragma: no cover - compiled
    """Copy the arcs into one (N, 4) int32 array, each state's emitting arcs first."""
    nstates = len(narcs)
    arcs = np.empty((narcs.sum(), 4), np.int32)
    index = np.zeros((nstates + 1, 2), np.int64)
    p = 0
    for s in range(nstates):
        index[s, 0] = p
        for emitting in (True, False):
            if not emitting:
                index[s, 1] = p
            for a in range(narcs[s]):
                o = arc_offset[s] + 4 * a
                if (words[o] != 0) == emitting:
                    for c in range(4):
                        arcs[p, c] = words[o + c]
                    p += 1
    index[nstates, 0] = p
    index[nstates, 1] = p
    return index, arcs


def read_graph(path: str | Path) -> Graph:
    """Read a binary OpenFst ``vector`` FST over the standard (tropical) arc, as
    ``mkgraph`` writes HCLG.fst."""
    path = Path(path)
    buf = np.fromfile(path, np.uint8)
    raw = buf.tobytes()[:4096]
    try:
        (magic,) = struct.unpack_from("<i", raw, 0)
        o = 4
        names = []
        for _ in range(2):
            (n,) = struct.unpack_from("<i", raw, o)
            names.append(raw[o + 4 : o + 4 + n].decode("ascii"))
            o += 4 + n
        _version, flags = struct.unpack_from("<ii", raw, o)
        o += 8 + 8  # version, flags; properties (uint64)
        start, nstates, _ = struct.unpack_from("<qqq", raw, o)
        o += 24
    except (struct.error, UnicodeDecodeError) as exc:
        raise InputError(f"not an OpenFst binary FST ({exc})", path) from None
    if magic != _FST_MAGIC or names != ["vector", "standard"] or flags & 0b111:
        raise InputError(
            f"expected a binary vector FST of standard arcs without symbol tables, got "
            f"{names} (flags {flags})", path,
        )  # fmt: skip
    if (len(buf) - o) % 4:
        raise InputError(f"FST data of {len(buf) - o} bytes, not a whole number of words", path)
    words = np.frombuffer(buf[o:].tobytes(), np.int32)  # copied: aligned
    narcs, arc_offset, end = _parse_states(words, nstates)
    if end != len(words):
        raise InputError(f"FST ends at byte {o + 4 * end}, the file has {len(buf)}", path)
    final = np.asarray(words[arc_offset - 3].view(np.float32), np.float64)
    index, arcs = _split_arcs(words, narcs, arc_offset)
    return Graph(int(start), final, index, arcs)


@dataclasses.dataclass
class Lattice:
    """A state-level lattice, states in topological order (0 the start): arcs
    ``src -> dst`` with ``ilabel`` (transition-id, 0 for epsilon), ``olabel`` (word, 0
    for none), ``graph`` and ``acoustic`` costs (unscaled); ``final`` per state."""

    src: np.ndarray  # int32, sorted
    dst: np.ndarray
    ilabel: np.ndarray
    olabel: np.ndarray
    graph: np.ndarray  # float32
    acoustic: np.ndarray
    final: np.ndarray  # (states,) float32, inf where not final

    @property
    def num_states(self) -> int:
        return len(self.final)

    @property
    def num_arcs(self) -> int:
        return len(self.src)

    def best_path(self, lmwt: float, penalty: float = 0.0) -> list[int] | None:
        """The words of the lowest-cost path at LM weight ``lmwt`` and word insertion
        penalty ``penalty`` (None for an empty lattice)."""
        words = _best_path(self.src, self.dst, self.olabel, self.graph, self.acoustic,
                           self.final, 1.0 / lmwt, penalty)  # fmt: skip
        return None if len(words) == 1 and words[0] == -1 else [int(w) for w in words]

    def oracle_errors(self, ref: Iterable[int]) -> int:
        """The fewest word errors (edits) of any path against ``ref``: Kaldi's
        ``lattice-oracle``. OOV reference words take an id no arc has."""
        ref_ids = np.asarray(list(ref), np.int64)
        return int(_oracle(self.src, self.dst, self.olabel, self.final, ref_ids))


@numba.njit(cache=True)
def _grow(a, n):  # pragma: no cover - compiled
    out = np.empty(max(2 * len(a), n), a.dtype)
    out[: len(a)] = a
    return out


@numba.njit(cache=True)
def _backward_costs(src, dst, g, ac, final, acscale):  # pragma: no cover - compiled
    """Each state's lowest cost to a final state (arcs sorted by source, sources in
    topological order), at acoustic scale ``acscale``."""
    beta = final.astype(np.float64)
    for k in range(len(src) - 1, -1, -1):
        v = g[k] + acscale * ac[k] + beta[dst[k]]
        if v < beta[src[k]]:
            beta[src[k]] = v
    return beta


@numba.njit(cache=True)
def _closure(
    index, arcs, weights, cutoff, tok_cost, tok_state, tok_eps, tok_of, l_from, l_to,
    l_arc, l_ac, l_next, nt, nl, stack, sp,
):  # fmt: skip  # pragma: no cover - compiled
    """The epsilon closure of the tokens on ``stack`` (Kaldi's ProcessNonemitting).
    Returns nt, nl and the stack's size: 0 when done, else it stopped for want of
    room in the token, link or stack arrays (grow them and call again)."""
    while sp > 0:
        i = stack[sp - 1]
        s = tok_state[i]
        width = index[s + 1, 0] - index[s, 1]
        if nt + width > len(tok_cost) or nl + width > len(l_from) or sp + width > len(stack):
            return nt, nl, sp
        sp -= 1
        cost = tok_cost[i]
        if cost > cutoff:
            continue
        k = tok_eps[i]  # a re-expanded token: its earlier epsilon links are stale
        while k >= 0:
            l_from[k] = -1
            k = l_next[k]
        tok_eps[i] = -1
        for arc in range(index[s, 1], index[s + 1, 0]):
            tot = cost + weights[arc, 2]
            if tot >= cutoff:
                continue
            nx = arcs[arc, 3]
            j = tok_of[nx]
            improved = True
            if j < 0:
                j = nt
                nt += 1
                tok_state[j] = nx
                tok_cost[j] = tot
                tok_of[nx] = j
            elif tot < tok_cost[j]:
                tok_cost[j] = tot
            else:
                improved = False
            l_from[nl] = i
            l_to[nl] = j
            l_arc[nl] = arc
            l_ac[nl] = 0.0
            l_next[nl] = tok_eps[i]
            tok_eps[i] = nl
            nl += 1
            if improved and index[nx + 1, 0] > index[nx, 1]:
                stack[sp] = j
                sp += 1
    return nt, nl, 0


@numba.njit(cache=True)
def _emit(
    index, arcs, weights, row, acscale, a, b, best_tok, cur_cutoff, adaptive,
    tok_cost, tok_state, tok_of, l_from, l_to, l_arc, l_ac, nt, nl,
):  # fmt: skip  # pragma: no cover - compiled
    """The emitting arcs of tokens [a, b) (one frame) into new tokens from ``nt`` and
    links from ``nl`` (the arrays have room for them). Returns nt, nl and the next
    frame's cut-off."""
    best = tok_cost[best_tok]
    next_cutoff = _INF  # first from the best token's arcs (as Kaldi)
    s = tok_state[best_tok]
    for arc in range(index[s, 0], index[s, 1]):
        tot = best + weights[arc, 2] - acscale * row[arcs[arc, 0] - 1]
        next_cutoff = min(next_cutoff, tot + adaptive)
    for i in range(a, b):
        cost = tok_cost[i]
        if cost > cur_cutoff:
            continue
        s = tok_state[i]
        for arc in range(index[s, 0], index[s, 1]):
            ac = -row[arcs[arc, 0] - 1]
            tot = cost + weights[arc, 2] + acscale * ac
            if tot >= next_cutoff:
                continue
            if tot + adaptive < next_cutoff:
                next_cutoff = tot + adaptive
            nx = arcs[arc, 3]
            j = tok_of[nx]
            if j < 0:
                j = nt
                nt += 1
                tok_state[j] = nx
                tok_cost[j] = tot
                tok_of[nx] = j
            elif tot < tok_cost[j]:
                tok_cost[j] = tot
            l_from[nl] = i
            l_to[nl] = j
            l_arc[nl] = arc
            l_ac[nl] = ac
            nl += 1
    return nt, nl, next_cutoff


@numba.njit(cache=True)
def _decode(
    index, arcs, weights, final, start, loglikes, acscale, beam, max_active, min_active,
    beam_delta, lattice_beam, allow_partial,
):  # fmt: skip  # pragma: no cover - compiled
    """One utterance. ``loglikes`` (T, max transition-id) holds, in column tid - 1, the
    log-likelihood of pdf(tid). Returns the lattice's arrays (see Lattice), whether a
    final state was reached, whether the lattice is acyclic, and the numbers of tokens
    and links the search made."""
    num_frames = loglikes.shape[0]
    cap_t = 1 << 14
    tok_cost = np.empty(cap_t, np.float64)
    tok_state = np.empty(cap_t, np.int32)
    tok_eps = np.full(cap_t, -1, np.int64)  # head of the token's epsilon-link chain
    cap_l = 1 << 15
    l_from = np.empty(cap_l, np.int32)  # -1: a stale link
    l_to = np.empty(cap_l, np.int32)
    l_arc = np.empty(cap_l, np.int32)  # the HCLG arc (labels, graph cost)
    l_ac = np.empty(cap_l, np.float32)  # unscaled acoustic cost
    l_next = np.empty(cap_l, np.int64)  # the next epsilon link of the same token
    frame_start = np.empty(num_frames + 2, np.int64)
    tok_of = np.full(len(final), -1, np.int32)
    stack = np.empty(1 << 12, np.int32)
    frame_start[0] = 0
    tok_cost[0] = 0.0
    tok_state[0] = start
    tok_of[start] = 0
    nt = 1
    nl = 0
    cutoff = beam
    for t in range(num_frames + 1):
        a = frame_start[t]
        # -- epsilon closure of frame t's tokens [a, nt), within the cut-off the
        # emitting step left (as Kaldi's ProcessNonemitting)
        sp = 0
        for i in range(a, nt):
            s = tok_state[i]
            if index[s + 1, 0] > index[s, 1]:
                if sp == len(stack):
                    stack = _grow(stack, sp + 1)
                stack[sp] = i
                sp += 1
        while True:
            nt, nl, sp = _closure(
                index, arcs, weights, cutoff, tok_cost, tok_state, tok_eps, tok_of, l_from,
                l_to, l_arc, l_ac, l_next, nt, nl, stack, sp,
            )  # fmt: skip
            if sp == 0:
                break
            # out of room: grow, and go on where it stopped
            tok_cost = _grow(tok_cost, 0)  # each doubles
            tok_state = _grow(tok_state, 0)
            old = len(tok_eps)
            tok_eps = _grow(tok_eps, 0)
            tok_eps[old:] = -1
            l_from = _grow(l_from, 0)
            l_to = _grow(l_to, 0)
            l_arc = _grow(l_arc, 0)
            l_ac = _grow(l_ac, 0)
            l_next = _grow(l_next, 0)
            stack = _grow(stack, 0)
        for i in range(a, nt):
            tok_of[tok_state[i]] = -1
        frame_start[t + 1] = nt
        if t == num_frames:
            break
        # -- emitting arcs of frame t's tokens into frame t + 1; the cut-off as Kaldi's
        # GetCutoff (beam, max-active, min-active; the adaptive beam)
        b = nt
        count = b - a
        best = _INF
        best_tok = a
        for i in range(a, b):
            if tok_cost[i] < best:
                best = tok_cost[i]
                best_tok = i
        cur_cutoff = best + beam
        adaptive = beam
        if count > max_active:
            kth = np.partition(tok_cost[a:b].copy(), max_active - 1)[max_active - 1]
            if kth < cur_cutoff:
                cur_cutoff = kth
                adaptive = kth - best + beam_delta
        if cur_cutoff == best + beam and count > min_active:
            kth = np.partition(tok_cost[a:b].copy(), min_active - 1)[min_active - 1]
            if kth > cur_cutoff:
                cur_cutoff = kth
                adaptive = kth - best + beam_delta
        need = 0  # room for every arc the tokens within the cut-off may take
        for i in range(a, b):
            if tok_cost[i] <= cur_cutoff:
                s = tok_state[i]
                need += index[s, 1] - index[s, 0]
        if nt + need > len(tok_cost):
            tok_cost = _grow(tok_cost, nt + need)
            tok_state = _grow(tok_state, nt + need)
            old = len(tok_eps)
            tok_eps = _grow(tok_eps, nt + need)
            tok_eps[old:] = -1
        if nl + need > len(l_from):
            l_from = _grow(l_from, nl + need)
            l_to = _grow(l_to, nl + need)
            l_arc = _grow(l_arc, nl + need)
            l_ac = _grow(l_ac, nl + need)
            l_next = _grow(l_next, nl + need)
        nt, nl, next_cutoff = _emit(
            index, arcs, weights, loglikes[t], acscale, a, b, best_tok, cur_cutoff, adaptive,
            tok_cost, tok_state, tok_of, l_from, l_to, l_arc, l_ac, nt, nl,
        )  # fmt: skip
        cutoff = next_cutoff
        if nt == b:  # every token pruned away: the search is stuck
            frame_start[t + 1] = b
            num_frames = t
            break
    # -- final costs of the last frame's tokens
    a = frame_start[num_frames]
    b = frame_start[num_frames + 1]
    tok_final = np.full(nt, _INF)
    reached = False
    for i in range(a, b):
        f = final[tok_state[i]]
        if f < _INF:
            tok_final[i] = f
            reached = True
    if not reached and allow_partial:
        for i in range(a, b):
            tok_final[i] = 0.0
    # -- backward Viterbi costs: links in reverse creation order. A link's target has
    # its final cost by then, except where an epsilon link was re-made after its
    # target's own links: a cost read before it fell asks for another pass.
    beta = tok_final.copy()
    read = np.zeros(nt, np.bool_)
    again = True
    passes = 0
    while again and passes < 100:
        again = False
        passes += 1
        read[:] = False
        for k in range(nl - 1, -1, -1):
            i = l_from[k]
            if i < 0:
                continue
            j = l_to[k]
            read[j] = True
            v = weights[l_arc[k], 2] + acscale * l_ac[k] + beta[j]
            if v < beta[i]:
                beta[i] = v
                if read[i]:
                    again = True
    best_total = beta[0]
    # -- keep the links (and the tokens on them) within the lattice beam
    keep = np.zeros(nl, np.bool_)
    m = 0
    if best_total < _INF:
        limit = best_total + lattice_beam
        for k in range(nl):
            i = l_from[k]
            if i >= 0:
                v = tok_cost[i] + weights[l_arc[k], 2] + acscale * l_ac[k] + beta[l_to[k]]
                if v <= limit:
                    keep[k] = True
                    m += 1
    # -- the kept links by source (a counting sort), then the kept tokens renumbered in
    # topological order (Kahn's: emitting links go to a later frame, epsilon links stay
    # in one and form no cycle in an HCLG without input-epsilon loops)
    first = np.zeros(nt + 1, np.int64)
    indeg = np.zeros(nt, np.int64)
    for k in range(nl):
        if keep[k]:
            first[l_from[k] + 1] += 1
            indeg[l_to[k]] += 1
    for i in range(nt):
        first[i + 1] += first[i]
    by_src = np.empty(m, np.int64)
    fill = first[:-1].copy()
    for k in range(nl):
        if keep[k]:
            by_src[fill[l_from[k]]] = k
            fill[l_from[k]] += 1
    new_id = np.full(nt, -1, np.int32)
    queue = np.empty(nt, np.int32)
    qh = 0
    qt = 0
    if best_total < _INF:
        queue[0] = 0
        qt = 1
    while qh < qt:
        i = queue[qh]
        new_id[i] = qh
        qh += 1
        for q in range(first[i], first[i + 1]):
            j = l_to[by_src[q]]
            indeg[j] -= 1
            if indeg[j] == 0:
                queue[qt] = j
                qt += 1
    n_new = qt
    src = np.empty(m, np.int32)
    dst = np.empty(m, np.int32)
    il = np.empty(m, np.int32)
    ol = np.empty(m, np.int32)
    g = np.empty(m, np.float32)
    ac = np.empty(m, np.float32)
    p = 0
    acyclic = True
    for q in range(n_new):
        i = queue[q]
        for r in range(first[i], first[i + 1]):
            k = by_src[r]
            if new_id[l_to[k]] < 0:
                acyclic = False
                continue
            src[p] = q
            dst[p] = new_id[l_to[k]]
            il[p] = arcs[l_arc[k], 0]
            ol[p] = arcs[l_arc[k], 1]
            g[p] = weights[l_arc[k], 2]
            ac[p] = l_ac[k]
            p += 1
    fin = np.full(n_new, np.float32(np.inf), np.float32)
    for q in range(n_new):
        i = queue[q]
        if tok_final[i] < _INF and tok_cost[i] + tok_final[i] <= best_total + lattice_beam:
            fin[q] = tok_final[i]
    return src[:p], dst[:p], il[:p], ol[:p], g[:p], ac[:p], fin, reached, acyclic, nt, nl


@numba.njit(cache=True)
def _best_path(src, dst, olabel, graph, acoustic, final, acscale, penalty):  # pragma: no cover
    n = len(final)
    words = np.full(1, -1, np.int64)
    if n == 0:
        return words
    cost = np.full(n, _INF)
    back = np.full(n, -1, np.int64)
    cost[0] = 0.0
    for k in range(len(src)):  # arcs sorted by source, sources in topological order
        c = cost[src[k]]
        if c == _INF:
            continue
        v = c + graph[k] + acscale * acoustic[k]
        if olabel[k] != 0:
            v += penalty
        if v < cost[dst[k]]:
            cost[dst[k]] = v
            back[dst[k]] = k
    best = _INF
    end = -1
    for s in range(n):
        if final[s] < np.inf and cost[s] + final[s] < best:
            best = cost[s] + final[s]
            end = s
    if end < 0:
        return words
    out = []
    s = end
    while s != 0:
        k = back[s]
        if olabel[k] != 0:
            out.append(olabel[k])
        s = src[k]
    res = np.empty(len(out), np.int64)
    for i in range(len(out)):
        res[i] = out[len(out) - 1 - i]
    return res


@numba.njit(cache=True)
def _oracle(src, dst, olabel, final, ref):  # pragma: no cover - compiled
    n = len(final)
    r = len(ref)
    if n == 0:
        return r
    big = 1 << 30
    d = np.full((n, r + 1), big, np.int64)
    d[0, 0] = 0
    k = 0
    for s in range(n):
        # deletions of reference words, once every arc into s is in
        for j in range(r):
            if d[s, j] + 1 < d[s, j + 1]:
                d[s, j + 1] = d[s, j] + 1
        while k < len(src) and src[k] == s:
            t = dst[k]
            w = olabel[k]
            for j in range(r + 1):
                c = d[s, j]
                if c >= big:
                    continue
                if w == 0:
                    if c < d[t, j]:
                        d[t, j] = c
                else:
                    if c + 1 < d[t, j]:  # insertion
                        d[t, j] = c + 1
                    if j < r:
                        v = c + (0 if ref[j] == w else 1)
                        if v < d[t, j + 1]:
                            d[t, j + 1] = v
            k += 1
    best = big
    for s in range(n):
        if final[s] < np.inf and d[s, r] < best:
            best = d[s, r]
    return best


@numba.njit(cache=True)
def _kahn(src, dst, n):  # pragma: no cover - compiled
    first = np.zeros(n + 1, np.int64)
    indeg = np.zeros(n, np.int64)
    for k in range(len(src)):
        first[src[k] + 1] += 1
        indeg[dst[k]] += 1
    for i in range(n):
        first[i + 1] += first[i]
    out = np.empty(len(src), np.int64)
    fill = first[:-1].copy()
    for k in range(len(src)):
        out[fill[src[k]]] = dst[k]
        fill[src[k]] += 1
    order = np.empty(n, np.int64)
    qt = 0
    for i in range(n):
        if indeg[i] == 0:
            order[qt] = i
            qt += 1
    qh = 0
    while qh < qt:
        i = order[qh]
        qh += 1
        for q in range(first[i], first[i + 1]):
            j = out[q]
            indeg[j] -= 1
            if indeg[j] == 0:
                order[qt] = j
                qt += 1
    return order[:qt]


def topological_order(src: np.ndarray, dst: np.ndarray, num_states: int) -> np.ndarray:
    """The states of an acyclic graph (arcs ``src -> dst``) in a topological order,
    state 0 first when nothing enters it (Kahn's algorithm); ValueError on a cycle."""
    order = _kahn(np.asarray(src, np.int64), np.asarray(dst, np.int64), int(num_states))
    if len(order) < num_states:
        raise ValueError("the graph has a cycle")
    return order


@dataclasses.dataclass(frozen=True)
class LatticeOptions:
    """Kaldi's decoder options: beam, max_active, min_active, lattice_beam,
    beam_delta [0.5], allow_partial."""

    beam: float = 13.0
    max_active: int = 7000
    min_active: int = 200
    lattice_beam: float = 8.0
    beam_delta: float = 0.5
    allow_partial: bool = True


def decode_lattice(
    graph: Graph, tid_loglikes: np.ndarray, acscale: float, opts: LatticeOptions
) -> tuple[Lattice, bool]:
    """Decode one utterance: ``tid_loglikes`` (T, num transition-ids), column tid - 1
    the log-likelihood of pdf(tid), unscaled; the search runs at acoustic scale
    ``acscale`` (1 / LM weight). Returns the lattice and whether a final state was
    reached (else, with ``allow_partial``, the best partial paths end the lattice)."""
    if tid_loglikes.shape[1] < graph.max_ilabel:
        raise ValueError(f"{tid_loglikes.shape[1]} columns, the graph has transition-id "
                         f"{graph.max_ilabel}")  # fmt: skip
    g = graph
    src, dst, il, ol, gc, ac, fin, reached, acyclic, _, _ = _decode(
        g.index, g.arcs, g.weights, g.final, g.start,
        np.ascontiguousarray(tid_loglikes, np.float32), float(acscale), float(opts.beam),
        int(opts.max_active), int(opts.min_active), float(opts.beam_delta),
        float(opts.lattice_beam), bool(opts.allow_partial),
    )  # fmt: skip
    if not acyclic:
        raise ValueError("the lattice has an epsilon cycle (an HCLG with input-epsilon loops)")
    lat = Lattice(src, dst, il, ol, gc, ac, fin)
    if not reached and not opts.allow_partial:
        lat = Lattice(*(x[:0] for x in (src, dst, il, ol, gc, ac, fin)))
    return lat, reached


# -- Kaldi's text forms. A Lattice: "src dst ilabel olabel graph,acoustic" per arc and
# "state graph,acoustic" per final state; a CompactLattice: "src dst word
# graph,acoustic,tid_tid" per arc and "state graph,acoustic,tid_tid" per final state.
# An empty line after each.


def _lattice_lines(lat: Lattice) -> list[str]:
    lines = [
        f"{s} {d} {i} {o} {g:.6g},{a:.6g}"
        for s, d, i, o, g, a in zip(
            lat.src.tolist(), lat.dst.tolist(), lat.ilabel.tolist(),
            lat.olabel.tolist(), lat.graph.tolist(), lat.acoustic.tolist(), strict=True,
        )
    ]  # fmt: skip
    finals = np.flatnonzero(lat.final < np.inf)
    return lines + [f"{s} {lat.final[s]:.6g},0" for s in finals.tolist()]


def _compact_lines(lat) -> list[str]:  # a determinize.CompactLattice
    tids = lat.tids.tolist()
    idx = lat.tid_index.tolist()
    lines = [
        f"{s} {d} {w} {g:.6g},{a:.6g},{'_'.join(map(str, tids[idx[k]:idx[k + 1]]))}"
        for k, (s, d, w, g, a) in enumerate(zip(
            lat.src.tolist(), lat.dst.tolist(), lat.word.tolist(), lat.graph.tolist(),
            lat.acoustic.tolist(), strict=True,
        ))
    ]  # fmt: skip
    ftids = lat.final_tids.tolist()
    fidx = lat.final_index.tolist()
    for s in np.flatnonzero(lat.final_graph < np.inf).tolist():
        tail = "_".join(map(str, ftids[fidx[s] : fidx[s + 1]]))
        lines.append(f"{s} {lat.final_graph[s]:.6g},{lat.final_acoustic[s]:.6g},{tail}")
    return lines


def write_lattices(path: str | Path, lattices: Iterable[tuple[str, object]]) -> None:
    """A gzipped text archive of Kaldi Lattices, or CompactLattices for determinized
    ones (``lattice-copy "ark:gunzip -c lat.1.gz|" ...`` reads either)."""
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
        for utt, lat in lattices:
            lines = _lattice_lines(lat) if isinstance(lat, Lattice) else _compact_lines(lat)
            f.write(f"{utt}\n" + "\n".join(lines) + "\n\n")


def _read_compact(utt: str, body: list[str], path: Path, line: int):
    from asr_distill.decode.determinize import CompactLattice

    arcs, finals = [], {}
    for j, text in enumerate(body):
        fields = text.split()
        try:
            g, a, tids = fields[-1].split(",")
            t = [int(x) for x in tids.split("_")] if tids else []
            if len(fields) == 4:
                arcs.append((int(fields[0]), int(fields[1]), int(fields[2]), float(g),
                             float(a), t))  # fmt: skip
            elif len(fields) == 2:
                finals[int(fields[0])] = (float(g), float(a), t)
            else:
                raise ValueError
        except ValueError:
            raise InputError(
                f"lattice {utt}: expected 'src dst word graph,acoustic,tids' or 'state "
                "graph,acoustic,tids'", path, line + 1 + j,
            ) from None  # fmt: skip
    n = 1 + max([max(s, d) for s, d, *_ in arcs] + list(finals), default=-1)
    if any(d <= s for s, d, *_ in arcs) or any(
        arcs[k][0] > arcs[k + 1][0] for k in range(len(arcs) - 1)
    ):
        raise InputError(f"lattice {utt}: states not in topological order", path, line + 1)
    lengths = [len(x[5]) for x in arcs]
    fin = [finals.get(s, (np.inf, 0.0, [])) for s in range(n)]
    return CompactLattice(
        np.array([x[0] for x in arcs], np.int32), np.array([x[1] for x in arcs], np.int32),
        np.array([x[2] for x in arcs], np.int32), np.array([x[3] for x in arcs], np.float32),
        np.array([x[4] for x in arcs], np.float32),
        np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64),
        np.array([t for x in arcs for t in x[5]], np.int32),
        np.array([f[0] for f in fin], np.float32), np.array([f[1] for f in fin], np.float32),
        np.concatenate([[0], np.cumsum([len(f[2]) for f in fin], dtype=np.int64)]).astype(np.int64),
        np.array([t for f in fin for t in f[2]], np.int32),
    )  # fmt: skip


def read_lattices(path: str | Path, compact: bool = False) -> Iterator[tuple[str, object]]:
    """Read what ``write_lattices`` wrote: states in topological order, 0 the start.
    CompactLattices come as state-level Lattices (``CompactLattice.to_lattice``), or as
    they are with ``compact``."""
    path = Path(path)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        head = i
        utt = lines[i].strip()
        end = i + 1
        while end < len(lines) and lines[end].strip():
            end += 1
        body = lines[head + 1 : end]
        i = end
        if body and body[0].split()[-1].count(",") == 2:
            clat = _read_compact(utt, body, path, head + 1)
            yield utt, clat if compact else clat.to_lattice()
            continue
        arcs = [line for line in body if line.count(" ") >= 4]
        finals = [line for line in body if line.count(" ") < 4]
        try:
            a = np.fromstring(" ".join(arcs).replace(",", " "), sep=" ").reshape(-1, 6)
            fin_rows = np.fromstring(" ".join(finals).replace(",", " "), sep=" ").reshape(-1, 3)
        except ValueError:
            raise InputError(
                f"lattice {utt}: expected 'src dst ilabel olabel graph,acoustic' or 'state "
                "graph,acoustic' lines", path, head + 1,
            ) from None  # fmt: skip
        num_states = int(max(a[:, :2].max(initial=-1), fin_rows[:, 0].max(initial=-1))) + 1
        final = np.full(num_states, np.inf, np.float32)
        final[fin_rows[:, 0].astype(np.int64)] = fin_rows[:, 1]
        src = a[:, 0].astype(np.int32)
        if len(src) and (np.any(np.diff(src) < 0) or np.any(a[:, 1] <= a[:, 0])):
            raise InputError(f"lattice {utt}: states not in topological order", path, head + 1)
        yield utt, Lattice(src, a[:, 1].astype(np.int32), a[:, 2].astype(np.int32),
                           a[:, 3].astype(np.int32), a[:, 4].astype(np.float32),
                           a[:, 5].astype(np.float32), final)  # fmt: skip
