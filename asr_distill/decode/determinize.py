"""Pruned lattice determinization: Kaldi's ``lattice-determinize-pruned`` for this
toolkit's state-level lattices.

A state-level lattice (:class:`~asr_distill.decode.lattice.Lattice`: transition-ids in,
words out) holds many paths with the same words: every alignment that survived the
lattice beam. Determinization keeps, for each word sequence, one path, the one of
lowest cost at the acoustic scale of the search, with its costs (graph and acoustic
apart) and its transition-ids. The result is Kaldi's CompactLattice: an acceptor on
words whose arcs carry ``graph,acoustic,tid_tid_...`` weights; no two arcs out of a
state share a word, and there are no epsilon arcs.

The algorithm is the subset construction of Kaldi's ``LatticeDeterminizerPruned``
(Povey et al., "Generating exact lattices in the WFST framework", ICASSP 2012) in the
lattice semiring, where ``a (+) b`` is whichever of the two has the lower total cost
``graph + acoustic x scale``, with its string of transition-ids. A state of the result
is a set of elements (input state, residual weight, residual string), kept at input
states that have a word arc out or are final. An arc on word ``w`` takes every
element's ``w`` arcs and the word-epsilon paths after them, keeps the lowest-cost way
to each input state, and divides out the common part: the lowest-cost element's weight
and the longest common prefix of the strings. Unlike Kaldi, the word-epsilon paths are
found once per lattice (epsilon removal: from each word arc's target, the best path to
each state it reaches), not once per subset. Pruning is Kaldi's: an element whose
forward cost plus the input's backward cost from its state is over ``beam`` from the
best path is dropped, and states are expanded best first. The input is acyclic (states
in topological order), so the construction ends; if it grows past ``max_arcs`` arcs or
its strings past ``max_mem`` bytes, it starts again at half the beam (Kaldi's
``max-mem`` lowers the beam too).

``decode`` determinizes each lattice after its search (``determinize: true``, the
default). Cost and sizes: bench/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import heapq

import numba
import numpy as np
from numba.typed import Dict, List

from asr_distill.decode.lattice import Lattice, _backward_costs, _grow, topological_order

_QUANT = 1024.0  # weights hashed and compared at Kaldi's delta, 1/1024
_I64 = numba.types.int64
_F64 = numba.types.float64
_F32 = numba.types.float32
_PRIO = numba.types.Tuple((_F64, _I64))


@dataclasses.dataclass
class CompactLattice:
    """A determinized lattice: Kaldi's CompactLattice. States in topological order (0
    the start); arc ``k`` goes ``src -> dst`` on ``word`` with costs ``graph``,
    ``acoustic`` and transition-ids ``tids[tid_index[k]:tid_index[k + 1]]``; a final
    state ``s`` has costs ``final_graph[s]`` (inf where not final), ``final_acoustic[s]``
    and transition-ids ``final_tids[final_index[s]:final_index[s + 1]]``."""

    src: np.ndarray  # int32, sorted
    dst: np.ndarray
    word: np.ndarray
    graph: np.ndarray  # float32
    acoustic: np.ndarray
    tid_index: np.ndarray  # int64 (arcs + 1)
    tids: np.ndarray  # int32
    final_graph: np.ndarray  # float32 (states)
    final_acoustic: np.ndarray
    final_index: np.ndarray  # int64 (states + 1)
    final_tids: np.ndarray

    @property
    def num_states(self) -> int:
        return len(self.final_graph)

    @property
    def num_arcs(self) -> int:
        return len(self.src)

    def to_lattice(self) -> Lattice:
        """The state-level lattice of the same paths (Kaldi's ``ConvertLattice``): an
        arc with transition-ids ``t1..tn`` becomes a chain whose first arc carries the
        word and the costs; a final weight with transition-ids or an acoustic cost
        becomes a chain to a new final state."""
        out = _expand(self.src, self.dst, self.word, self.graph, self.acoustic,
                      self.tid_index, self.tids, self.final_graph, self.final_acoustic,
                      self.final_index, self.final_tids)  # fmt: skip
        src, dst, il, ol, g, ac, final = out
        order = topological_order(src, dst, len(final))
        rank = np.empty(len(final), np.int64)
        rank[order] = np.arange(len(final))
        src, dst = rank[src], rank[dst]
        by_src = np.argsort(src, kind="stable")
        fin = np.empty(len(final), np.float32)
        fin[rank] = final
        return Lattice(src[by_src].astype(np.int32), dst[by_src].astype(np.int32),
                       il[by_src], ol[by_src], g[by_src], ac[by_src], fin)  # fmt: skip

    @classmethod
    def empty(cls) -> CompactLattice:
        i32, f32 = np.zeros(0, np.int32), np.zeros(0, np.float32)
        return cls(i32, i32, i32, f32, f32, np.zeros(1, np.int64), i32, f32, f32,
                   np.zeros(1, np.int64), i32)  # fmt: skip


@numba.njit(cache=True)
def _expand(src, dst, word, g, ac, tid_index, tids, fg, fa, f_index, f_tids):  # pragma: no cover
    n = len(fg)
    m = len(src)
    o_src, o_dst = List.empty_list(_I64), List.empty_list(_I64)
    o_il, o_ol = List.empty_list(_I64), List.empty_list(_I64)
    o_g, o_ac = List.empty_list(_F32), List.empty_list(_F32)
    final = List.empty_list(_F32)
    for _ in range(n):
        final.append(np.float32(np.inf))
    nxt = n
    for k in range(m):
        a, b = tid_index[k], tid_index[k + 1]
        if b - a <= 1:
            o_src.append(src[k])
            o_dst.append(dst[k])
            o_il.append(tids[a] if b > a else 0)
            o_ol.append(word[k])
            o_g.append(g[k])
            o_ac.append(ac[k])
            continue
        prev = src[k]
        for i in range(a, b):
            to = dst[k] if i == b - 1 else nxt
            if i < b - 1:
                nxt += 1
                final.append(np.float32(np.inf))
            o_src.append(prev)
            o_dst.append(to)
            o_il.append(tids[i])
            o_ol.append(word[k] if i == a else 0)
            o_g.append(g[k] if i == a else np.float32(0.0))
            o_ac.append(ac[k] if i == a else np.float32(0.0))
            prev = to
    for s in range(n):
        if fg[s] == np.inf:
            continue
        a, b = f_index[s], f_index[s + 1]
        if b == a and fa[s] == 0.0:
            final[s] = fg[s]
            continue
        prev = s
        first = True
        for i in range(a, max(b, a + 1)):
            to = nxt
            nxt += 1
            final.append(np.float32(np.inf))
            o_src.append(prev)
            o_dst.append(to)
            o_il.append(f_tids[i] if b > a else 0)
            o_ol.append(0)
            o_g.append(fg[s] if first else np.float32(0.0))
            o_ac.append(fa[s] if first else np.float32(0.0))
            first = False
            prev = to
        final[prev] = np.float32(0.0)
    k = len(o_src)
    r_src = np.empty(k, np.int64)
    r_dst = np.empty(k, np.int64)
    r_il = np.empty(k, np.int32)
    r_ol = np.empty(k, np.int32)
    r_g = np.empty(k, np.float32)
    r_ac = np.empty(k, np.float32)
    for i in range(k):
        r_src[i], r_dst[i], r_il[i], r_ol[i] = o_src[i], o_dst[i], o_il[i], o_ol[i]
        r_g[i], r_ac[i] = o_g[i], o_ac[i]
    r_fin = np.empty(nxt, np.float32)
    for i in range(nxt):
        r_fin[i] = final[i]
    return r_src, r_dst, r_il, r_ol, r_g, r_ac, r_fin


@numba.njit(cache=True)
def _reserve(a, need):  # pragma: no cover - compiled
    return a if need <= len(a) else _grow(a, need)


@numba.njit(cache=True)
def _eps_paths(src, first, dst, il, ol, g, ac, keep, alpha, beta, limit, acscale, seeds,
               max_pool):  # fmt: skip
    """Epsilon removal, once per lattice: from each seed state ``u`` (the start, and
    the target of every word arc), the lowest-cost word-epsilon path to each state
    ``v`` it reaches that has a word arc out or is final, within the beam (``alpha[u]``
    + path + ``beta[v]``). Seed ``q``'s records are ``index[q]:index[q + 1]``: state
    ``rv[r]``, costs ``rg[r]``, ``ra[r]``, transition-ids ``pool[soff[r]:soff[r +
    1]]``; ``ok`` false when the strings outgrew ``max_pool`` (it stops there)."""
    n = len(keep)
    cg = np.zeros(n)
    ca = np.zeros(n)
    pred = np.full(n, -1, np.int64)
    seen = np.zeros(n, np.bool_)
    index = np.zeros(len(seeds) + 1, np.int64)
    rv = np.empty(1024, np.int64)
    rg = np.empty(1024)
    ra = np.empty(1024)
    soff = np.zeros(1025, np.int64)
    pool = np.empty(4096, np.int32)
    nr = 0
    tmp = np.empty(64, np.int32)
    heap = np.empty(1024, np.int64)  # a binary min-heap of state ids
    for q in range(len(seeds)):
        u = seeds[q]
        seen[u] = True
        cg[u] = 0.0
        ca[u] = 0.0
        pred[u] = -1
        heap[0] = u
        nh = 1
        while nh > 0:
            # pop the lowest id: topological numbering, so its cost is final
            s = heap[0]
            nh -= 1
            last = heap[nh]
            i = 0
            while True:
                c = 2 * i + 1
                if c >= nh:
                    break
                if c + 1 < nh and heap[c + 1] < heap[c]:
                    c += 1
                if heap[c] >= last:
                    break
                heap[i] = heap[c]
                i = c
            heap[i] = last
            seen[s] = False
            for k in range(first[s], first[s + 1]):
                if ol[k] != 0:
                    continue
                t = dst[k]
                ng = cg[s] + g[k]
                na = ca[s] + ac[k]
                tot = ng + acscale * na
                if alpha[u] + tot + beta[t] > limit:
                    continue
                if seen[t]:
                    if tot >= cg[t] + acscale * ca[t]:
                        continue
                else:
                    seen[t] = True
                    heap = _reserve(heap, nh + 1)
                    i = nh
                    nh += 1
                    while i > 0 and heap[(i - 1) // 2] > t:
                        heap[i] = heap[(i - 1) // 2]
                        i = (i - 1) // 2
                    heap[i] = t
                cg[t] = ng
                ca[t] = na
                pred[t] = k
            if not keep[s]:
                continue
            m = 0
            x = s
            while x != u:
                k = pred[x]
                if il[k] != 0:
                    tmp = _reserve(tmp, m + 1)
                    tmp[m] = il[k]
                    m += 1
                x = src[k]
            rv = _reserve(rv, nr + 1)
            rg = _reserve(rg, nr + 1)
            ra = _reserve(ra, nr + 1)
            soff = _reserve(soff, nr + 2)
            pool = _reserve(pool, soff[nr] + m)
            for i in range(m):
                pool[soff[nr] + i] = tmp[m - 1 - i]
            rv[nr] = s
            rg[nr] = cg[s]
            ra[nr] = ca[s]
            soff[nr + 1] = soff[nr] + m
            nr += 1
            if soff[nr] > max_pool:
                return index, rv[:nr], rg[:nr], ra[:nr], soff[: nr + 1], pool[: soff[nr]], False
        index[q + 1] = nr
    return index, rv[:nr], rg[:nr], ra[:nr], soff[: nr + 1], pool[: soff[nr]], True


@numba.njit(cache=True)
def _hash(es, eg, ea, buf, boff):  # pragma: no cover - compiled
    h = np.uint64(1469598103934665603)
    p = np.uint64(1099511628211)
    for i in range(len(es)):
        for v in (es[i], np.int64(np.round(eg[i] * _QUANT)),
                  np.int64(np.round(ea[i] * _QUANT)), boff[i + 1] - boff[i]):  # fmt: skip
            h = (h ^ np.uint64(v & 0xFFFFFFFFFFFF)) * p
        for j in range(boff[i], boff[i + 1]):
            h = (h ^ np.uint64(buf[j])) * p
    return np.int64(h >> np.uint64(1))


@numba.njit(cache=True)
def _same(es, eg, ea, buf, boff, e_s, e_g, e_a, e_off, e_pool, start, length):  # pragma: no cover
    if length != len(es):
        return False
    for i in range(length):
        j = start + i
        if (e_s[j] != es[i]
                or np.round(e_g[j] * _QUANT) != np.round(eg[i] * _QUANT)
                or np.round(e_a[j] * _QUANT) != np.round(ea[i] * _QUANT)
                or e_off[j + 1] - e_off[j] != boff[i + 1] - boff[i]):  # fmt: skip
            return False
        for x in range(boff[i + 1] - boff[i]):
            if e_pool[e_off[j] + x] != buf[boff[i] + x]:
                return False
    return True


@numba.njit(cache=True)
def _determinize(src, dst, il, ol, g, ac, final, acscale, beam, max_arcs,
                 max_pool):  # fmt: skip  # pragma: no cover
    n = len(final)
    first = np.zeros(n + 1, np.int64)
    for k in range(len(src)):
        first[src[k] + 1] += 1
    for s in range(n):
        first[s + 1] += first[s]
    keep = final < np.inf
    is_seed = np.zeros(n, np.bool_)
    is_seed[0] = True
    for k in range(len(src)):
        if ol[k] != 0:
            keep[src[k]] = True
            is_seed[dst[k]] = True
    alpha = np.full(n, np.inf)
    alpha[0] = 0.0
    for k in range(len(src)):
        v = alpha[src[k]] + g[k] + acscale * ac[k]
        if v < alpha[dst[k]]:
            alpha[dst[k]] = v
    beta = _backward_costs(src, dst, g, ac, final, acscale)
    limit = beta[0] + beam
    seeds = np.flatnonzero(is_seed)
    seed_id = np.full(n, -1, np.int64)
    seed_id[seeds] = np.arange(len(seeds))
    r_index, rv, rg, ra, rsoff, rpool, ok = _eps_paths(
        src, first, dst, il, ol, g, ac, keep, alpha, beta, limit, acscale, seeds, max_pool
    )
    # scratch, per input state
    sc_g = np.zeros(n)
    sc_a = np.zeros(n)
    sc_i = np.zeros(n, np.int64)
    sc_k = np.zeros(n, np.int64)
    sc_r = np.zeros(n, np.int64)
    sc_in = np.zeros(n, np.bool_)
    # the result's states: elements (input state, residual costs, residual string) in
    # pools; strings of elements and of arcs in pools of transition-ids
    e_s, e_g, e_a = np.empty(1024, np.int64), np.empty(1024), np.empty(1024)
    e_off = np.zeros(1025, np.int64)
    e_pool = np.empty(4096, np.int32)
    ne = 0
    d_start, d_len, d_next = List.empty_list(_I64), List.empty_list(_I64), List.empty_list(_I64)
    d_fwd, d_done = List.empty_list(_F64), List.empty_list(numba.types.boolean)
    index = Dict.empty(_I64, _I64)
    a_src, a_dst, a_word = List.empty_list(_I64), List.empty_list(_I64), List.empty_list(_I64)
    a_g, a_a = List.empty_list(_F64), List.empty_list(_F64)
    a_off = np.zeros(1025, np.int64)
    a_pool = np.empty(4096, np.int32)
    heap = List.empty_list(_PRIO)
    buf = np.empty(4096, np.int32)
    # the start state: the start's records, not normalized
    q0 = seed_id[0]
    cnt = 0
    if not ok:  # the paths' strings outgrew max_pool: no start state, the caller retries
        r_index[q0 + 1] = r_index[q0]
    for r in range(r_index[q0], r_index[q0 + 1]):
        if rg[r] + acscale * ra[r] + beta[rv[r]] <= limit:
            cnt += 1
    if cnt > 0:
        e_s = _reserve(e_s, cnt)
        e_g = _reserve(e_g, cnt)
        e_a = _reserve(e_a, cnt)
        e_off = _reserve(e_off, cnt + 1)
        for r in range(r_index[q0], r_index[q0 + 1]):
            if rg[r] + acscale * ra[r] + beta[rv[r]] <= limit:
                e_s[ne], e_g[ne], e_a[ne] = rv[r], rg[r], ra[r]
                m = rsoff[r + 1] - rsoff[r]
                e_pool = _reserve(e_pool, e_off[ne] + m)
                e_pool[e_off[ne] : e_off[ne] + m] = rpool[rsoff[r] : rsoff[r + 1]]
                e_off[ne + 1] = e_off[ne] + m
                ne += 1
        d_start.append(0)
        d_len.append(ne)
        d_fwd.append(0.0)
        d_next.append(-1)
        d_done.append(False)
        heapq.heappush(heap, (0.0, np.int64(0)))
    while len(heap) > 0:
        _, d = heapq.heappop(heap)
        if d_done[d]:
            continue
        d_done[d] = True
        start, length, fwd = d_start[d], d_len[d], d_fwd[d]
        # every word arc out of the elements, grouped by word
        cnt = 0
        for i in range(start, start + length):
            s = e_s[i]
            for k in range(first[s], first[s + 1]):
                if ol[k] != 0:
                    cnt += 1
        words = np.empty(cnt, np.int64)
        el = np.empty(cnt, np.int64)
        arc = np.empty(cnt, np.int64)
        j = 0
        for i in range(start, start + length):
            s = e_s[i]
            for k in range(first[s], first[s + 1]):
                if ol[k] != 0:
                    words[j], el[j], arc[j] = ol[k], i, k
                    j += 1
        order = np.argsort(words, kind="mergesort")
        lo = 0
        while lo < cnt:
            w = words[order[lo]]
            hi = lo
            while hi < cnt and words[order[hi]] == w:
                hi += 1
            # the lowest-cost way to each input state through a word-w arc, then
            # word-epsilon arcs (the records of the arc's target)
            touched = List.empty_list(_I64)
            for x in range(lo, hi):
                i, k = el[order[x]], arc[order[x]]
                q = seed_id[dst[k]]
                bg = e_g[i] + g[k]
                ba = e_a[i] + ac[k]
                for r in range(r_index[q], r_index[q + 1]):
                    v = rv[r]
                    ng = bg + rg[r]
                    na = ba + ra[r]
                    tot = ng + acscale * na
                    if fwd + tot + beta[v] > limit:
                        continue
                    if sc_in[v]:
                        if tot >= sc_g[v] + acscale * sc_a[v]:
                            continue
                    else:
                        sc_in[v] = True
                        touched.append(v)
                    sc_g[v], sc_a[v], sc_i[v], sc_k[v], sc_r[v] = ng, na, i, k, r
            lo = hi
            m = len(touched)
            if m == 0:
                continue
            es = np.empty(m, np.int64)
            for x in range(m):
                es[x] = touched[x]
            es.sort()
            eg = np.empty(m)
            ea = np.empty(m)
            # their strings: residual + the arc's transition-id + the record's
            boff = np.zeros(m + 1, np.int64)
            for x in range(m):
                v = es[x]
                sc_in[v] = False
                i, k, r = sc_i[v], sc_k[v], sc_r[v]
                eg[x], ea[x] = sc_g[v], sc_a[v]
                ln = e_off[i + 1] - e_off[i] + (il[k] != 0) + rsoff[r + 1] - rsoff[r]
                buf = _reserve(buf, boff[x] + ln)
                p = boff[x]
                for y in range(e_off[i], e_off[i + 1]):
                    buf[p] = e_pool[y]
                    p += 1
                if il[k] != 0:
                    buf[p] = il[k]
                    p += 1
                for y in range(rsoff[r], rsoff[r + 1]):
                    buf[p] = rpool[y]
                    p += 1
                boff[x + 1] = p
            # divide out the lowest-cost element's weight and the common prefix
            b = 0
            best = np.inf
            lcp = boff[1] - boff[0]
            for x in range(m):
                tot = eg[x] + acscale * ea[x]
                if tot < best:
                    best = tot
                    b = x
                if x > 0:
                    c = 0
                    lim = min(lcp, boff[x + 1] - boff[x])
                    while c < lim and buf[boff[x] + c] == buf[c]:
                        c += 1
                    lcp = c
            w_g, w_a = eg[b], ea[b]
            prio = np.inf
            for x in range(m):
                eg[x] -= w_g
                ea[x] -= w_a
                v = eg[x] + acscale * ea[x] + beta[es[x]]
                if v < prio:
                    prio = v
            # the residual strings, in place: each string less its first lcp
            roff = np.empty(m + 1, np.int64)
            roff[0] = 0
            p = 0
            for x in range(m):
                for y in range(boff[x] + lcp, boff[x + 1]):
                    buf[p] = buf[y]
                    p += 1
                roff[x + 1] = p
            new_fwd = fwd + w_g + acscale * w_a
            h = _hash(es, eg, ea, buf, roff)
            t = index[h] if h in index else -1  # noqa: SIM401 (numba: get is Optional)
            last = -1
            while t >= 0 and not _same(es, eg, ea, buf, roff, e_s, e_g, e_a, e_off, e_pool,
                                       d_start[t], d_len[t]):  # fmt: skip
                last = t
                t = d_next[t]
            if t < 0:
                t = len(d_start)
                d_start.append(ne)
                d_len.append(m)
                d_fwd.append(new_fwd)
                d_next.append(-1)
                d_done.append(False)
                e_s = _reserve(e_s, ne + m)
                e_g = _reserve(e_g, ne + m)
                e_a = _reserve(e_a, ne + m)
                e_off = _reserve(e_off, ne + m + 1)
                e_pool = _reserve(e_pool, e_off[ne] + roff[m])
                for x in range(m):
                    e_s[ne], e_g[ne], e_a[ne] = es[x], eg[x], ea[x]
                    ln = roff[x + 1] - roff[x]
                    e_pool[e_off[ne] : e_off[ne] + ln] = buf[roff[x] : roff[x + 1]]
                    e_off[ne + 1] = e_off[ne] + ln
                    ne += 1
                if last < 0:
                    index[h] = t
                else:
                    d_next[last] = t
                heapq.heappush(heap, (new_fwd + prio, np.int64(t)))
            elif new_fwd < d_fwd[t]:
                d_fwd[t] = new_fwd
                if not d_done[t]:
                    heapq.heappush(heap, (new_fwd + prio, np.int64(t)))
            # the arc; its string is the common prefix, which the residuals overwrote in
            # buf: rebuild it from the parts of the first element (all share it)
            na_ = len(a_src)
            a_src.append(d)
            a_dst.append(t)
            a_word.append(w)
            a_g.append(w_g)
            a_a.append(w_a)
            a_off = _reserve(a_off, na_ + 2)
            a_pool = _reserve(a_pool, a_off[na_] + lcp)
            v = es[0]
            i, k, r = sc_i[v], sc_k[v], sc_r[v]
            p = a_off[na_]
            y = 0
            for z in range(e_off[i], e_off[i + 1]):
                if y < lcp:
                    a_pool[p] = e_pool[z]
                    p += 1
                    y += 1
            if il[k] != 0 and y < lcp:
                a_pool[p] = il[k]
                p += 1
                y += 1
            for z in range(rsoff[r], rsoff[r + 1]):
                if y < lcp:
                    a_pool[p] = rpool[z]
                    p += 1
                    y += 1
            a_off[na_ + 1] = p
            if len(a_src) > max_arcs or len(rpool) + e_off[ne] + a_off[na_ + 1] > max_pool:
                ok = False
                heap.clear()
                break
    # final weights: the lowest-cost final element of each state
    nd = len(d_start)
    fg = np.full(nd, np.inf)
    fa = np.zeros(nd)
    f_off = np.zeros(nd + 1, np.int64)
    f_pool = np.empty(4096, np.int32)
    for d in range(nd):
        best = np.inf
        bi = -1
        for i in range(d_start[d], d_start[d] + d_len[d]):
            f = final[e_s[i]]
            if f < np.inf and e_g[i] + f + acscale * e_a[i] < best:
                best = e_g[i] + f + acscale * e_a[i]
                bi = i
        ln = 0
        if bi >= 0:
            fg[d], fa[d] = e_g[bi] + final[e_s[bi]], e_a[bi]
            ln = e_off[bi + 1] - e_off[bi]
            f_pool = _reserve(f_pool, f_off[d] + ln)
            f_pool[f_off[d] : f_off[d] + ln] = e_pool[e_off[bi] : e_off[bi + 1]]
        f_off[d + 1] = f_off[d] + ln
    na_ = len(a_src)
    return (_np(a_src, np.int64), _np(a_dst, np.int64), _np(a_word, np.int32),
            _np(a_g, np.float64), _np(a_a, np.float64), a_off[: na_ + 1].copy(),
            a_pool[: a_off[na_]].copy(), fg, fa, f_off, f_pool[: f_off[nd]].copy(), ok)  # fmt: skip


@numba.njit(cache=True)
def _np(values, dtype):  # pragma: no cover - compiled
    out = np.empty(len(values), dtype)
    for i in range(len(values)):
        out[i] = values[i]
    return out


@numba.njit(cache=True)
def _coaccessible(order, src, dst, final_ok):  # pragma: no cover - compiled
    """Which states reach a final state (``order`` topological)."""
    first = np.zeros(len(final_ok) + 1, np.int64)
    for k in range(len(src)):
        first[src[k] + 1] += 1
    for i in range(len(final_ok)):
        first[i + 1] += first[i]
    out = np.empty(len(src), np.int64)
    fill = first[:-1].copy()
    for k in range(len(src)):
        out[fill[src[k]]] = dst[k]
        fill[src[k]] += 1
    alive = final_ok.copy()
    for q in range(len(order) - 1, -1, -1):
        d = order[q]
        for j in range(first[d], first[d + 1]):
            if alive[out[j]]:
                alive[d] = True
                break
    return alive


def determinize_lattice(lat: Lattice, acscale: float, beam: float = 8.0,
                        max_arcs: int = 200_000,
                        max_mem: int = 50_000_000) -> tuple[CompactLattice, float]:  # fmt: skip
    """The determinized lattice (see the module's doc) of ``lat`` at acoustic scale
    ``acscale`` (1 / the search's LM weight), pruned to ``beam``; and the beam that
    was used: smaller than ``beam`` when the result outgrew ``max_arcs`` arcs or its
    strings of transition-ids ``max_mem`` bytes (Kaldi's ``--max-mem``, 50 MB), which a
    lattice of long stretches without words (a weak model's) can make them."""
    if lat.num_states == 0 or lat.best_path(1.0 / acscale) is None:  # no final state reached
        return CompactLattice.empty(), beam
    i64, f64 = np.int64, np.float64
    args = (lat.src.astype(i64), lat.dst.astype(i64), lat.ilabel.astype(i64),
            lat.olabel.astype(i64), lat.graph.astype(f64), lat.acoustic.astype(f64),
            lat.final.astype(f64), float(acscale))  # fmt: skip
    while True:
        # below a beam of 0.1 the limits go: what is left is about the best path alone
        # (an infinite beam has no smaller one: no limits either)
        limits = (max_arcs, max_mem // 4) if 0.1 <= beam < np.inf else (2**62, 2**62)
        out = _determinize(*args, float(beam), *limits)
        if out[-1]:
            break
        beam *= 0.5
    src, dst, word, g, ac, a_off, a_pool, fg, fa, f_off, f_pool, _ = out
    nd = len(fg)
    if nd == 0:
        return CompactLattice.empty(), beam
    # keep the states on a path to a final state, in topological order
    order = topological_order(src, dst, nd)
    alive = _coaccessible(order, src, dst, np.isfinite(fg))
    if not alive[0]:
        return CompactLattice.empty(), beam
    kept = order[alive[order]]
    rank = np.full(nd, -1, np.int64)
    rank[kept] = np.arange(len(kept))
    arcs = np.flatnonzero(alive[src] & alive[dst])
    arcs = arcs[np.argsort(rank[src[arcs]], kind="stable")]
    tid_index, tids = _gather(a_off, a_pool, arcs)
    final_index, final_tids = _gather(f_off, f_pool, kept)
    return CompactLattice(
        rank[src[arcs]].astype(np.int32), rank[dst[arcs]].astype(np.int32), word[arcs],
        g[arcs].astype(np.float32), ac[arcs].astype(np.float32), tid_index, tids,
        fg[kept].astype(np.float32), fa[kept].astype(np.float32), final_index, final_tids,
    ), beam  # fmt: skip


def _gather(offsets: np.ndarray, pool: np.ndarray, which: np.ndarray) -> tuple:
    """The strings ``which`` of a pool (``pool[offsets[i]:offsets[i + 1]]``), as new
    offsets and pool."""
    lengths = offsets[which + 1] - offsets[which]
    index = np.zeros(len(which) + 1, np.int64)
    np.cumsum(lengths, out=index[1:])
    starts = np.repeat(offsets[which] - index[:-1], lengths)
    return index, pool[starts + np.arange(index[-1])].astype(np.int32)
