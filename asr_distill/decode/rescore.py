"""``lm-rescore``: Kaldi's lmrescore.sh for this toolkit's lattices. Each lattice's
graph costs lose the first-pass LM's cost of its words and gain another LM's, and the
best paths of the decode's LM weights and penalties are taken again.

Both LMs are ARPA back-off models (:class:`asr_distill.lang.arpa.BackoffLM`; Kaldi's
``lmrescore_const_arpa.sh`` reads the new one the same way). A word's cost depends on
the words before it, so the lattice is expanded: a state becomes (state, the last N-1
words), N the higher of the two orders, and every arc with a word gets ``-ln p_new(w |
h) + ln p_old(w | h)``, every final state ``</s>``'s. That is the composition of
``lattice-lmrescore --lm-scale=-1`` with the old G and ``--lm-scale=1`` with the new
one, exact, except that the old LM's cost is its back-off probability where G's would
be its cheapest path (G's back-off arcs are epsilons, so a path may take a back-off arc
where the n-gram exists; determinized HCLGs keep the cheaper one). With the same LM
twice, the lattice's costs do not change (tested).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import multiprocessing
from collections.abc import Mapping
from pathlib import Path

import numba
import numpy as np
import yaml

from asr_distill.decode.config import DecodeConfig
from asr_distill.decode.decode import read_symbols
from asr_distill.decode.lattice import Lattice, _backward_costs, read_lattices, write_lattices
from asr_distill.decode.score import hyp_file
from asr_distill.errors import InputError
from asr_distill.io import atomic_open, atomic_path
from asr_distill.io.step import step_log
from asr_distill.lang.arpa import BOS, EOS, BackoffLM

log = logging.getLogger(__name__)

_LN10 = math.log(10.0)


@dataclasses.dataclass
class RescoreConfig:
    """old_lm: the first pass's ARPA (its G is in the graph); new_lm: the ARPA to
    rescore with; oov_word: the lang's OOV word, read as arpa_unk where an ARPA lacks
    it [<UNK>]; arpa_unk: the ARPAs' unknown-word symbol [<unk>]; beam: the expansion's
    pruning beam, at the decode's acoustic scale [6; inf: exact]."""

    old_lm: str
    new_lm: str
    oov_word: str = "<UNK>"
    arpa_unk: str = "<unk>"
    beam: float = 6.0


_MAX_ORDER = 5
_PAD = -1
_BOS = -2  # the sentence start in a history of lattice word ids
_KEY5 = numba.types.UniTuple(numba.types.int64, 5)


class LmCost:
    """An ARPA model for numba: its n-grams' ``log10 p`` and back-off weights in typed
    dicts keyed by padded tuples of LM word ids, and the LM id of each lattice word
    (the lang's OOV word read as ``arpa_unk`` where the ARPA lacks it)."""

    def __init__(self, lm: BackoffLM, words: Mapping[int, str], config: RescoreConfig,
                 path: str | Path):  # fmt: skip
        if lm.order > _MAX_ORDER:
            raise InputError(f"a {lm.order}-gram LM: rescoring takes up to {_MAX_ORDER}", path)
        self.order = lm.order
        self.path = Path(path)
        ids = {w[0]: i for i, w in enumerate(lm.ngrams[0])}
        keys, probs, bows = [], [], []
        for table in lm.ngrams:
            for ngram, (lp, bow) in table.items():
                keys.append([ids[w] for w in ngram] + [_PAD] * (_MAX_ORDER - len(ngram)))
                probs.append(lp)
                bows.append(np.nan if bow is None else bow)
        self.prob, self.bow = _lm_tables(np.asarray(keys, np.int64).reshape(-1, _MAX_ORDER),
                                         np.asarray(probs), np.asarray(bows))  # fmt: skip
        vocab = lm.vocab
        self.word_ids = np.full(max(words, default=0) + 1, _PAD, np.int64)
        for i, w in words.items():
            name = config.arpa_unk if w == config.oov_word and w not in vocab else w
            self.word_ids[i] = ids.get(name, _PAD)
        self.words = dict(words)
        self.bos = ids.get(BOS, _PAD)
        self.eos = ids.get(EOS, _PAD)

    def check(self, lat: Lattice) -> None:
        """Every word of ``lat`` must be in the LM."""
        used = np.unique(lat.olabel[lat.olabel > 0])
        missing = used[self.word_ids[used] == _PAD]
        if len(missing):
            raise InputError(
                f"the LM has no {self.words.get(int(missing[0]), missing[0])!r} (a lattice "
                "word): rescoring needs every word of the first pass's vocabulary", self.path,
            )  # fmt: skip

    def args(self) -> tuple:
        return self.prob, self.bow, self.order, self.word_ids, self.bos, self.eos


@numba.njit(cache=True)
def _lm_tables(keys, probs, bows):  # pragma: no cover - compiled
    prob = numba.typed.Dict.empty(_KEY5, numba.types.float64)
    bow = numba.typed.Dict.empty(_KEY5, numba.types.float64)
    for i in range(len(keys)):
        k = (keys[i, 0], keys[i, 1], keys[i, 2], keys[i, 3], keys[i, 4])
        prob[k] = probs[i]
        if not np.isnan(bows[i]):
            bow[k] = bows[i]
    return prob, bow


@numba.njit(cache=True)
def _key(h, n, w):  # pragma: no cover - compiled
    """The padded key of the last ``n`` history ids ``h`` (LM ids) and ``w`` (or -1)."""
    k = [_PAD] * _MAX_ORDER
    start = len(h) - n
    for i in range(n):
        k[i] = h[start + i]
    if w != _PAD:
        k[n] = w
    return (k[0], k[1], k[2], k[3], k[4])


@numba.njit(cache=True)
def _lm_cost(prob, bow, order, word_ids, bos, hist, w_lat):  # pragma: no cover - compiled
    """-ln p(w | hist) by the back-off rule: ``hist`` in lattice word ids (_BOS the
    sentence start, _PAD unused slots at the front), ``w_lat`` the word's LM id."""
    h = np.empty(len(hist), np.int64)
    m = 0
    for x in hist:
        if x == _PAD:
            continue
        h[m] = bos if x == _BOS else word_ids[x]
        m += 1
    h = h[:m]
    w = w_lat
    n = min(m, order - 1)
    backoff = 0.0
    while True:
        key = _key(h, n, w)
        if key in prob:
            return -np.log(10.0) * (backoff + prob[key])
        if n == 0:
            return np.inf
        hk = _key(h, n, _PAD)
        if hk in bow:
            backoff += bow[hk]
        n -= 1


@numba.njit(cache=True)
def _rescore(
    src, dst, il, ol, g, ac, final, acscale, beam, keep,
    o_prob, o_bow, o_order, o_ids, o_bos, o_eos,
    n_prob, n_bow, n_order, n_ids, n_bos, n_eos,
):  # fmt: skip  # pragma: no cover - compiled
    num = len(final)
    # backward costs of the lattice as it is (arcs sorted by source, sources topological)
    beta = _backward_costs(src, dst, g, ac, final, acscale)
    index = numba.typed.Dict.empty(_KEY5, numba.types.int64)  # (state, history) -> new
    cap = 1024
    owner = np.empty(cap, np.int64)
    hists = np.empty((cap, 4), np.int64)
    alpha = np.empty(cap, np.float64)
    nxt = np.empty(cap, np.int64)  # states of one lattice state, linked
    head = np.full(num, -1, np.int64)
    start_hist = np.full(4, _PAD, np.int64)
    if keep > 0:
        start_hist[3] = _BOS
    owner[0] = 0
    hists[0] = start_hist
    alpha[0] = 0.0
    nxt[0] = -1
    head[0] = 0
    ns = 1
    index[(np.int64(0), start_hist[0], start_hist[1], start_hist[2], start_hist[3])] = 0
    a_src = []
    a_dst = []
    a_arc = []
    a_g = []
    best = beta[0]
    for k in range(len(src)):
        s = src[k]
        d = dst[k]
        w = ol[k]
        j = head[s]
        while j >= 0:
            a = alpha[j]
            if a + beta[s] > best + beam:
                j = nxt[j]
                continue
            h = hists[j]
            delta = 0.0
            h2 = h.copy()
            if w != 0:
                delta = _lm_cost(n_prob, n_bow, n_order, n_ids, n_bos, h, n_ids[w]) - _lm_cost(
                    o_prob, o_bow, o_order, o_ids, o_bos, h, o_ids[w]
                )
                if keep > 0:
                    for i in range(4 - keep, 3):
                        h2[i] = h[i + 1]
                    h2[3] = w
            cost = a + g[k] + delta + acscale * ac[k]
            est = cost + beta[d]
            if est > best + beam:
                j = nxt[j]
                continue
            if est < best:
                best = est
            key = (np.int64(d), h2[0], h2[1], h2[2], h2[3])
            t = index[key] if key in index else -1  # noqa: SIM401 (numba: get is Optional)
            if t < 0:
                if ns == len(owner):
                    owner = np.concatenate((owner, np.empty(ns, np.int64)))
                    hists = np.concatenate((hists, np.empty((ns, 4), np.int64)))
                    alpha = np.concatenate((alpha, np.empty(ns, np.float64)))
                    nxt = np.concatenate((nxt, np.empty(ns, np.int64)))
                t = ns
                ns += 1
                owner[t] = d
                hists[t] = h2
                alpha[t] = cost
                nxt[t] = head[d]
                head[d] = t
                index[key] = t
            elif cost < alpha[t]:
                alpha[t] = cost
            a_src.append(j)
            a_dst.append(t)
            a_arc.append(k)
            a_g.append(g[k] + delta)
            j = nxt[j]
    fin = np.full(ns, np.inf, np.float32)
    for t in range(ns):
        f = final[owner[t]]
        if f < np.inf:
            h = hists[t]
            fin[t] = f + (
                _lm_cost(n_prob, n_bow, n_order, n_ids, n_bos, h, n_eos)
                - _lm_cost(o_prob, o_bow, o_order, o_ids, o_bos, h, o_eos)
            )
    m = len(a_src)
    out_src = np.empty(m, np.int64)
    out_dst = np.empty(m, np.int64)
    out_arc = np.empty(m, np.int64)
    out_g = np.empty(m, np.float32)
    for i in range(m):
        out_src[i] = a_src[i]
        out_dst[i] = a_dst[i]
        out_arc[i] = a_arc[i]
        out_g[i] = a_g[i]
    # prune to the beam by the rescored lattice's own forward-backward costs: arcs in
    # reverse creation order go from later lattice states first
    beta2 = fin.astype(np.float64)
    for i in range(m - 1, -1, -1):
        v = out_g[i] + acscale * ac[out_arc[i]] + beta2[out_dst[i]]
        if v < beta2[out_src[i]]:
            beta2[out_src[i]] = v
    keep_arc = np.zeros(m, np.bool_)
    alive = np.zeros(ns, np.bool_)
    if beta2[0] < np.inf:
        alive[0] = True
        limit = beta2[0] + beam
        for i in range(m):
            v = alpha[out_src[i]] + out_g[i] + acscale * ac[out_arc[i]] + beta2[out_dst[i]]
            if v <= limit:
                keep_arc[i] = True
                alive[out_dst[i]] = True
    for t in range(ns):
        if not alive[t] or alpha[t] + fin[t] > beta2[0] + beam:
            fin[t] = np.inf
    return owner[:ns], fin, out_src, out_dst, out_arc, out_g, keep_arc, alive


def rescore_lattice(lat: Lattice, old: LmCost, new: LmCost, *, beam: float = np.inf,
                    acscale: float = 0.1) -> Lattice:  # fmt: skip
    """The lattice with graph costs ``- old LM + new LM`` (see the module's doc),
    expanded by LM history; an expanded state whose forward cost (new LM) plus the
    lattice's backward cost from it (old LM) at acoustic scale ``acscale`` is over
    ``beam`` from the best such estimate is not expanded (Kaldi's pruned composition;
    inf: exact); then the result is pruned to ``beam`` by its own forward-backward
    costs. States renumbered in topological order."""
    if lat.num_states == 0:
        return lat
    keep = max(old.order, new.order) - 1
    if keep > 4:
        raise ValueError("histories of up to 4 words")
    new.check(lat)
    old.check(lat)
    owner, fin, a_src, a_dst, a_arc, a_g, keep_arc, alive = _rescore(
        lat.src, lat.dst, lat.ilabel, lat.olabel, lat.graph, lat.acoustic, lat.final,
        float(acscale), float(beam), keep, *old.args(), *new.args(),
    )  # fmt: skip
    order = np.lexsort((np.arange(len(owner)), owner))
    rank = np.full(len(owner), -1, np.int64)
    kept_states = order[alive[order]]
    rank[kept_states] = np.arange(len(kept_states))
    src = rank[a_src[keep_arc]]
    by_src = np.argsort(src, kind="stable")
    arcs = a_arc[keep_arc][by_src]
    return Lattice(
        src[by_src].astype(np.int32), rank[a_dst[keep_arc]][by_src].astype(np.int32),
        lat.ilabel[arcs], lat.olabel[arcs], a_g[keep_arc][by_src], lat.acoustic[arcs],
        fin[kept_states],
    )  # fmt: skip


_STATE: dict = {}


def _rescore_file(path: Path) -> list[tuple[str, float, float, list[int] | None, int]]:
    st = _STATE
    out, lattices = [], []
    for utt, lat in read_lattices(path):
        new = rescore_lattice(lat, st["old"], st["new"], beam=st["beam"], acscale=st["acscale"])
        lattices.append((utt, new))
        for lmwt, wip in st["settings"]:
            out.append((utt, lmwt, wip, new.best_path(lmwt, wip), new.num_arcs))
    with atomic_path(st["out_dir"] / path.name) as tmp:
        write_lattices(tmp, lattices)
    return out


def lm_rescore(
    in_dir: str | Path, out_dir: str | Path, config: RescoreConfig, *, nj: int = 1,
    force: bool = False,
) -> dict | None:  # fmt: skip
    """The ``lm-rescore`` step: rescore ``in_dir``'s lattices (a decode dir) into
    ``out_dir``: lattices, ``hyp.<LMWT>[_<WIP>].txt`` at the decode's settings,
    ``words.txt`` and ``summary.yaml``; then ``score out_dir``."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    paths = sorted(in_dir.glob("lat.*.gz"))
    if not paths or not (in_dir / "words.txt").is_file():
        raise InputError("no lat.*.gz and words.txt: decode with lattices first", in_dir)
    with step_log(out_dir, "rescore.log", force=force, config=config) as run:
        if not run:
            return None
        for old_file in out_dir.glob("lat.*.gz"):
            old_file.unlink()
        saved = yaml.safe_load((in_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        known = {f.name for f in dataclasses.fields(DecodeConfig)}
        decode_config = DecodeConfig(**{k: v for k, v in saved.items() if k in known})
        words = read_symbols(in_dir / "words.txt")
        old = LmCost(BackoffLM.read_arpa(config.old_lm), words, config, config.old_lm)
        new = LmCost(BackoffLM.read_arpa(config.new_lm), words, config, config.new_lm)
        _STATE.update(old=old, new=new, settings=decode_config.settings(), out_dir=out_dir,
                      beam=config.beam, acscale=1.0 / decode_config.lattice_lmwt())  # fmt: skip
        try:
            if nj <= 1 or len(paths) < 2:
                parts = [_rescore_file(p) for p in paths]
            else:
                with multiprocessing.get_context("fork").Pool(nj) as pool:
                    parts = pool.map(_rescore_file, paths)
        finally:
            _STATE.clear()
        results = list(itertools.chain.from_iterable(parts))
        hyps: dict[tuple[float, float], dict[str, list[str]]] = {}
        for utt, lmwt, wip, ids, _ in results:
            hyps.setdefault((lmwt, wip), {})[utt] = [words.get(i, f"<{i}>") for i in ids or []]
        for (lmwt, wip), by_utt in hyps.items():
            with atomic_open(out_dir / hyp_file(lmwt, wip)) as f:
                f.writelines(f"{u} {' '.join(by_utt[u])}".rstrip() + "\n" for u in sorted(by_utt))
        with atomic_open(out_dir / "words.txt") as f:
            f.write((in_dir / "words.txt").read_text(encoding="utf-8"))
        utts = {r[0] for r in results}
        arcs = sum(r[4] for r in results) // max(len(hyps), 1)
        summary = {
            "source": str(in_dir), "utterances": len(utts), "settings": len(hyps),
            "rescored_arcs": arcs, "old_lm_order": old.order, "new_lm_order": new.order,
        }  # fmt: skip
        with atomic_open(out_dir / "summary.yaml") as f:
            yaml.safe_dump(summary, f, sort_keys=False)
        log.info("rescored %d lattices of %s (%d arcs after expansion by LM history): %s -> %s",
                 len(utts), in_dir, arcs, config.old_lm, config.new_lm)  # fmt: skip
        return summary
