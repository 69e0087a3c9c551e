"""Decision-tree statistics: Kaldi's acc-tree-stats and the Gaussian objective of
build-tree.

An *event* is the phonetic context of a frame: the phones at the ``context_width``
positions of the window (``central_position`` is the frame's own phone; 0 outside the
utterance) plus the frame's pdf-class (Kaldi's key ``kPdfClass`` = -1). For each event
we keep the sufficient statistics of one diagonal Gaussian: frame count, sum and sum
of squares of the features.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import kaldi_hmm_gmm
import numpy as np

from asr_distill.errors import InputError

log = logging.getLogger(__name__)

#: Kaldi's ``kPdfClass``: the event key of the pdf-class.
PDF_CLASS_KEY = -1
#: Variance floor of Kaldi's GaussClusterable in tree building.
DEFAULT_VAR_FLOOR = 0.01
# Rows kept unreduced in accumulate_tree_stats before they are merged.
_FLUSH_ROWS = 200_000


def gauss_objf(
    counts: np.ndarray, sums: np.ndarray, sumsqs: np.ndarray, var_floor: float = DEFAULT_VAR_FLOOR
) -> np.ndarray:
    """Log-likelihood of pooled data under its own ML diagonal Gaussian (Kaldi's
    ``GaussClusterable::Objf``), for a batch of pools.

    With ``n`` frames, mean ``m = sum / n``, variance ``v = sumsq / n - m²`` and floored
    variance ``f = max(v, var_floor)`` per dimension::

        objf = -0.5 * n * (sum_d v_d / f_d + sum_d log f_d + D * log(2π))

    which is ``-0.5 * n * (D * (1 + log 2π) + sum_d log v_d)`` when nothing is floored.
    Pools with ``n <= 0`` score 0.

    Args:
        counts: ``(...)`` frame counts.
        sums: ``(..., D)`` feature sums.
        sumsqs: ``(..., D)`` sums of squared features.
        var_floor: variance floor (default 0.01, as Kaldi).

    Returns:
        ``(...)`` float64 objective.
    """
    counts = np.asarray(counts, dtype=np.float64)
    ok = counts > 0
    n = np.where(ok, counts, 1.0)[..., None]  # (..., 1)
    mean = sums / n  # (..., D)
    var = sumsqs / n - mean * mean  # (..., D)
    floored = np.maximum(var, var_floor)
    dim = sums.shape[-1]
    per_frame = -0.5 * (
        np.sum(var / floored, axis=-1) + np.sum(np.log(floored), axis=-1) + dim * np.log(2 * np.pi)
    )
    return np.where(ok, counts * per_frame, 0.0)


def _reduce(
    events: np.ndarray, counts: np.ndarray, sums: np.ndarray, sumsqs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sum rows with equal events; the result is sorted by event (lexicographically)."""
    if events.shape[0] == 0:
        return events, counts, sums, sumsqs
    order = np.lexsort(events.T[::-1])  # sort by column 0, then 1, ...
    ev = events[order]
    new = np.ones(len(ev), dtype=bool)
    new[1:] = np.any(ev[1:] != ev[:-1], axis=1)
    starts = np.flatnonzero(new)
    return (
        ev[starts],
        np.add.reduceat(counts[order], starts),
        np.add.reduceat(sums[order], starts, axis=0),
        np.add.reduceat(sumsqs[order], starts, axis=0),
    )


@dataclass
class TreeStats:
    """Per-event Gaussian statistics (Kaldi's ``BuildTreeStatsType``), as arrays.

    Attributes:
        events: ``(E, context_width + 1)`` int32; columns ``0..context_width-1`` are the
            phones at those window positions (0 = outside the utterance, or a context
            position of a context-independent phone), the last column is the pdf-class.
            Rows are unique and sorted.
        counts: ``(E,)`` float64 frame counts.
        sums: ``(E, D)`` float64 feature sums.
        sumsqs: ``(E, D)`` float64 sums of squared features.
        context_width: N, the window size (3 = triphone).
        central_position: P, the window position of the frame's own phone.
    """

    events: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    sumsqs: np.ndarray
    context_width: int = 3
    central_position: int = 1

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        return int(self.sums.shape[1])

    @property
    def num_events(self) -> int:
        return int(self.events.shape[0])

    def column(self, key: int) -> int:
        """Column of ``events`` holding Kaldi event key ``key`` (-1 = pdf-class)."""
        return self.context_width if key == PDF_CLASS_KEY else key

    @classmethod
    def empty(cls, dim: int, context_width: int = 3, central_position: int = 1) -> TreeStats:
        return cls(
            np.zeros((0, context_width + 1), dtype=np.int32),
            np.zeros(0),
            np.zeros((0, dim)),
            np.zeros((0, dim)),
            context_width,
            central_position,
        )

    def merge(self, other: TreeStats) -> TreeStats:
        """Sum of two sets of stats (e.g. from parallel jobs), like Kaldi's sum-tree-stats."""
        if (self.context_width, self.central_position) != (
            other.context_width,
            other.central_position,
        ):
            raise ValueError("cannot merge tree stats with different context windows")
        if self.num_events and other.num_events and self.dim != other.dim:
            raise ValueError(f"feature dims differ: {self.dim} vs {other.dim}")
        ev, c, s, q = _reduce(
            np.concatenate([self.events, other.events]),
            np.concatenate([self.counts, other.counts]),
            np.concatenate([self.sums, other.sums]),
            np.concatenate([self.sumsqs, other.sumsqs]),
        )
        return TreeStats(ev, c, s, q, self.context_width, self.central_position)

    def save(self, path: str | Path) -> None:
        """Write to a ``.npz`` file."""
        np.savez(
            path,
            events=self.events,
            counts=self.counts,
            sums=self.sums,
            sumsqs=self.sumsqs,
            window=np.array([self.context_width, self.central_position], dtype=np.int32),
        )

    @classmethod
    def load(cls, path: str | Path) -> TreeStats:
        """Read stats written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as z:
                window = z["window"]
                stats = cls(
                    z["events"].astype(np.int32),
                    z["counts"].astype(np.float64),
                    z["sums"].astype(np.float64),
                    z["sumsqs"].astype(np.float64),
                    int(window[0]),
                    int(window[1]),
                )
        except (KeyError, ValueError, OSError) as e:
            raise InputError(f"not a tree-stats file: {e}", path) from e
        n = stats.events.shape[0]
        if (
            stats.events.shape[1:] != (stats.context_width + 1,)
            or stats.counts.shape != (n,)
            or stats.sums.shape[0] != n
            or stats.sumsqs.shape != stats.sums.shape
        ):
            raise InputError("inconsistent array shapes in tree-stats file", path)
        return stats


class _TidTables:
    """Per-transition-id lookup arrays (index = transition-id, entry 0 unused)."""

    def __init__(self, trans_model: kaldi_hmm_gmm.TransitionModel):
        n = trans_model.num_transition_ids
        id2state = np.asarray(trans_model.id2state, dtype=np.int64)  # (n+1,) 1-based states
        tuples = [t.__getstate__() for t in trans_model.tuples]  # (phone, hmm_state, fpdf, spdf)
        topo = trans_model.topo
        entries: dict[int, list] = {}
        self.phone = np.zeros(n + 1, dtype=np.int32)
        self.pdf_class = np.zeros(n + 1, dtype=np.int32)
        self.is_final = np.zeros(n + 1, dtype=bool)
        self.is_self_loop = np.zeros(n + 1, dtype=bool)
        self.state = np.zeros(n + 1, dtype=np.int64)
        for tid in range(1, n + 1):
            phone, hmm_state = tuples[id2state[tid] - 1][:2]
            if phone not in entries:
                entries[phone] = topo.topology_for_phone(phone)
            hmm = entries[phone][hmm_state]
            loop = trans_model.is_self_loop(tid)
            self.phone[tid] = phone
            self.state[tid] = id2state[tid]
            self.is_self_loop[tid] = loop
            self.is_final[tid] = trans_model.is_final(tid)
            # Kaldi's TransitionIdToPdfClass.
            self.pdf_class[tid] = hmm.self_loop_pdf_class if loop else hmm.forward_pdf_class
        self.num_tids = n


def _phone_ends(tab: _TidTables, tids: np.ndarray) -> np.ndarray:
    """Boolean ``(T,)``: frame t is the last frame of a phone instance.

    Like Kaldi's SplitToPhones: a phone ends at a transition to the final state; in
    reordered alignments (self-loops after the forward transition) the self-loops
    that follow the final transition still belong to it. A change of phone without a
    final transition also ends one (Kaldi flags such alignments as bad).
    """
    t_len = len(tids)
    state = tab.state[tids]
    loop = tab.is_self_loop[tids]
    run = np.concatenate([[0], np.cumsum(state[1:] != state[:-1])])  # (T,) run of equal states
    last_fwd = np.maximum.accumulate(np.where(~loop, np.arange(t_len), -1))  # (T,)
    safe = np.maximum(last_fwd, 0)
    after_final = (last_fwd >= 0) & tab.is_final[tids[safe]] & (run[safe] == run)
    ends = np.zeros(t_len, dtype=bool)
    ends[-1] = True
    cont = loop[1:] & (run[1:] == run[:-1])  # next frame is a self-loop of the same state
    ends[:-1] = (after_final[:-1] & ~cont) | (tab.phone[tids[1:]] != tab.phone[tids[:-1]])
    return ends


_TABLES: dict[int, tuple[kaldi_hmm_gmm.TransitionModel, _TidTables]] = {}


def tid_tables(trans_model: kaldi_hmm_gmm.TransitionModel) -> _TidTables:
    """Per-transition-id lookup tables of ``trans_model`` (cached per model object)."""
    hit = _TABLES.get(id(trans_model))
    if hit is None or hit[0] is not trans_model:
        if len(_TABLES) > 8:
            _TABLES.clear()
        hit = _TABLES[id(trans_model)] = (trans_model, _TidTables(trans_model))
    return hit[1]


def split_to_phones(
    trans_model: kaldi_hmm_gmm.TransitionModel, tids: np.ndarray
) -> list[tuple[int, int, int]]:
    """Kaldi's SplitToPhones (plain or reordered alignments): ``(phone, first frame,
    number of frames)`` of each phone instance of a transition-id alignment."""
    if len(tids) == 0:
        return []
    tab = tid_tables(trans_model)
    tids = np.asarray(tids, np.int64)
    last = np.flatnonzero(_phone_ends(tab, tids))  # (n_inst,)
    first = np.concatenate([[0], last[:-1] + 1])
    phones = tab.phone[tids[last]]
    return [(int(p), int(a), int(b - a + 1)) for p, a, b in zip(phones, first, last, strict=True)]


def _utterance_events(
    tab: _TidTables, tids: np.ndarray, ci: np.ndarray, width: int, center: int
) -> np.ndarray:
    """Events ``(T, width + 1)`` int32 of the frames of one utterance."""
    ends = _phone_ends(tab, tids)
    inst = np.concatenate([[0], np.cumsum(ends[:-1])])  # (T,) phone instance of each frame
    n_inst = int(inst[-1]) + 1
    last = np.flatnonzero(ends)
    inst_phone = tab.phone[tids[last]]  # (n_inst,)
    padded = np.concatenate(
        [np.zeros(center, np.int32), inst_phone, np.zeros(width - 1 - center, np.int32)]
    )
    windows = np.stack([padded[j : j + n_inst] for j in range(width)], axis=1)  # (n_inst, N)
    is_ci = ci[inst_phone]
    ctx = np.ones(width, dtype=bool)
    ctx[center] = False
    windows[np.ix_(is_ci, ctx)] = 0
    ev = np.empty((len(tids), width + 1), dtype=np.int32)
    ev[:, :width] = windows[inst]
    ev[:, width] = tab.pdf_class[tids]
    return ev


def accumulate_tree_stats(
    trans_model: kaldi_hmm_gmm.TransitionModel,
    alignments: Mapping[str, Sequence[int]],
    feats: Mapping[str, np.ndarray],
    *,
    ci_phones: Collection[int] = (),
    context_width: int = 3,
    central_position: int = 1,
) -> TreeStats:
    """Accumulate per-context Gaussian statistics from alignments, like Kaldi's
    ``acc-tree-stats``.

    Each alignment (1-based transition-ids of ``trans_model``, one per frame) is split
    into phone instances (Kaldi's SplitToPhones, plain or reordered); each frame gives
    the event ``(phone at window position 0, ..., N-1, pdf-class)`` with phones outside
    the utterance as 0 and the pdf-class of the transition-id (forward or self-loop
    pdf-class of its HMM state, as Kaldi's TransitionIdToPdfClass). For a centre phone
    in ``ci_phones`` the context positions are 0 (Kaldi leaves those keys out).

    Utterances missing from ``feats``, or whose length differs from the alignment,
    are skipped with a warning, as in Kaldi.

    Args:
        trans_model: transition model the alignments refer to (mono or any tree).
        alignments: utt id -> ``(T,)`` transition-ids.
        feats: utt id -> ``(T, D)`` features (e.g. MFCC + deltas after CMVN).
        ci_phones: context-independent phones (``--ci-phones``).
        context_width: N (default 3).
        central_position: P (default 1).

    Returns:
        The stats (float64 sums of float64-cast features).
    """
    if not 0 <= central_position < context_width:
        raise ValueError(f"central_position {central_position} not in [0, {context_width})")
    tab = _TidTables(trans_model)
    ci = np.zeros(max(int(tab.phone.max()), max(ci_phones, default=0)) + 1, dtype=bool)
    ci[list(ci_phones)] = True
    stats: TreeStats | None = None
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    n_pending = n_done = n_skipped = 0

    def flush() -> None:
        nonlocal stats, pending, n_pending
        if not pending:
            return
        ev, c, s, q = (np.concatenate(parts) for parts in zip(*pending, strict=True))
        part = TreeStats(*_reduce(ev, c, s, q), context_width, central_position)
        stats = part if stats is None else stats.merge(part)
        pending, n_pending = [], 0

    for utt, ali in alignments.items():
        if utt not in feats:
            log.warning("acc-tree-stats: no features for %s, skipping", utt)
            n_skipped += 1
            continue
        tids = np.asarray(ali, dtype=np.int64)  # (T,)
        x = np.asarray(feats[utt], dtype=np.float64)  # (T, D)
        if x.ndim != 2 or len(tids) != x.shape[0] or len(tids) == 0:
            log.warning(
                "acc-tree-stats: %s: alignment has %d frames, features %s; skipping",
                utt,
                len(tids),
                x.shape,
            )
            n_skipped += 1
            continue
        if tids.min() < 1 or tids.max() > tab.num_tids:
            raise ValueError(f"{utt}: transition-id out of range [1, {tab.num_tids}]")
        ev = _utterance_events(tab, tids, ci, context_width, central_position)
        pending.append(_reduce(ev, np.ones(len(tids)), x, x * x))
        n_pending += len(pending[-1][0])
        n_done += 1
        if n_pending >= _FLUSH_ROWS:
            flush()
    flush()
    log.info("acc-tree-stats: %d utterances used, %d skipped", n_done, n_skipped)
    if stats is None:
        dim = next((np.shape(f)[1] for f in feats.values()), 0) if len(feats) else 0
        return TreeStats.empty(int(dim), context_width, central_position)
    return stats
