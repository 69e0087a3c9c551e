"""FST operations that kaldifst lacks, done in C++ where it counts.

- :func:`relabel_to_epsilon`: Kaldi's ``fstrmsymbols`` (input side) as a composition
  with a one-state relabelling transducer, so no arc is touched in Python.
- :func:`arc_table`: all arcs and final weights of an FST as numpy arrays, parsed
  from OpenFst's text printer (printing in C++ and parsing with numpy beats a Python
  arc loop by two orders of magnitude).
- :func:`stochasticity`: Kaldi's ``fstisstochastic``: per state, the log-semiring sum
  of its arc weights and final weight.
- :func:`fst_size`: (states, arcs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import kaldifst
import numpy as np


def fst_size(fst: kaldifst.StdFst) -> tuple[int, int]:
    """(number of states, number of arcs) of ``fst``."""
    n = fst.num_states
    return n, sum(fst.num_arcs(s) for s in range(n))


def relabel_to_epsilon(
    fst: kaldifst.StdVectorFst, labels: Iterable[int], max_label: int
) -> kaldifst.StdVectorFst:
    """``fst`` with the input labels in ``labels`` replaced by epsilon (0).

    Every input label of ``fst`` must be 0, in ``labels`` or in ``1..max_label``. Done
    as ``R ∘ fst`` with ``R`` one final state carrying ``l:l`` for ``l`` in
    ``1..max_label`` and ``0:d`` for ``d`` in ``labels``: the composition keeps
    ``fst``'s states and arcs one for one, only relabelled. Raises ValueError if an
    input label is outside that set (its arcs would be lost).
    """
    drop = sorted(set(labels))
    relabel = kaldifst.StdVectorFst()
    s = relabel.add_state()
    relabel.start = s
    relabel.set_final(s, 0.0)
    for label in range(1, max_label + 1):
        relabel.add_arc(s, kaldifst.StdArc(label, label, 0.0, s))
    for label in drop:
        if 1 <= label <= max_label:
            raise ValueError(f"label {label} both kept and dropped")
        relabel.add_arc(s, kaldifst.StdArc(0, label, 0.0, s))
    kaldifst.arcsort(relabel, sort_type="olabel")
    out = kaldifst.compose(relabel, fst, connect=False)
    if fst_size(out) != fst_size(fst):
        raise ValueError(
            f"relabelling changed the FST {fst_size(fst)} -> {fst_size(out)}: an input "
            f"label outside 1..{max_label} and the dropped labels"
        )
    return out


@dataclasses.dataclass
class ArcTable:
    """Arcs and final weights of an FST (weights are tropical costs)."""

    num_states: int
    src: np.ndarray  # (A,) int64
    dst: np.ndarray  # (A,) int64
    ilabel: np.ndarray  # (A,) int64
    olabel: np.ndarray  # (A,) int64
    weight: np.ndarray  # (A,) float64
    final_state: np.ndarray  # (F,) int64
    final_weight: np.ndarray  # (F,) float64


def arc_table(fst: kaldifst.StdFst) -> ArcTable:
    """All arcs and final weights of ``fst`` as arrays (see the module docstring)."""
    text = fst.to_str(show_weight_one=True, fst_field_separator="\t")
    data = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    newlines = np.flatnonzero(data == ord("\n"))  # (L,) one per line
    tabs = np.flatnonzero(data == ord("\t"))
    tabs_before = np.searchsorted(tabs, newlines)  # (L,) tabs before each line's end
    del data, tabs
    fields = np.diff(tabs_before, prepend=0) + 1  # (L,) 5 for an arc, 2 for a final weight
    values = np.fromstring(text, sep=" ") if text else np.zeros(0)
    del text
    if values.size != fields.sum():
        raise RuntimeError("cannot parse the printed FST")
    starts = np.concatenate([[0], np.cumsum(fields)[:-1]]).astype(np.int64)
    arcs, finals = starts[fields == 5], starts[fields == 2]
    if len(arcs) + len(finals) != len(fields):
        raise RuntimeError("unexpected line in the printed FST")
    return ArcTable(
        num_states=fst.num_states,
        src=values[arcs].astype(np.int64),
        dst=values[arcs + 1].astype(np.int64),
        ilabel=values[arcs + 2].astype(np.int64),
        olabel=values[arcs + 3].astype(np.int64),
        weight=values[arcs + 4],
        final_state=values[finals].astype(np.int64),
        final_weight=values[finals + 1],
    )


@dataclasses.dataclass
class Stochasticity:
    """Per state ``-ln(exp(-final) + sum over arcs exp(-weight))``: its min and max over
    states, as Kaldi's ``fstisstochastic`` prints them; 0 and 0 for a stochastic FST."""

    min_cost: float
    max_cost: float
    num_states: int

    def is_stochastic(self, delta: float = 0.01) -> bool:
        return abs(self.min_cost) <= delta and abs(self.max_cost) <= delta

    def __str__(self) -> str:
        return f"{self.min_cost:.6g} {self.max_cost:.6g}"


def stochasticity(fst: kaldifst.StdFst, table: ArcTable | None = None) -> Stochasticity:
    """Kaldi's ``fstisstochastic`` in the log semiring (its default for these graphs)."""
    t = table or arc_table(fst)
    state = np.concatenate([t.src, t.final_state])
    cost = np.concatenate([t.weight, t.final_weight])
    n = t.num_states
    best = np.full(n, np.inf)
    np.minimum.at(best, state, cost)
    used = np.isfinite(best)
    mass = np.bincount(state, weights=np.exp(best[state] - cost), minlength=n)
    total = best[used] - np.log(mass[used])  # (S,) log-semiring sum per state, as a cost
    if total.size == 0:
        return Stochasticity(0.0, 0.0, 0)
    return Stochasticity(float(total.min()), float(total.max()), int(total.size))
