"""Lexicon FSTs: L.fst and L_disambig.fst (phones -> words) with optional silence.

The layout follows Kaldi's ``utils/make_lexicon_fst.pl`` with a silence probability
``p`` (``sil_prob``; costs are negated natural logs)::

    start --<eps>:<eps> / -log(1-p)--> loop          (no silence at the start)
    start --SIL:<eps>   / -log p-----> loop          (via the silence-disambig state)
    loop  --ph1:WORD--> ... --phN:<eps> / -log(1-p)--> loop     (a word, no silence after)
                        ... --phN:<eps> / -log p-----> sil --SIL:<eps>--> loop
    loop is the only final state.

The word label sits on the first arc of its pronunciation; a word whose last phone is
the silence phone itself gets no optional silence after it. In L_disambig the
pronunciations carry their disambiguation symbols (:func:`add_disambig_symbols`),
silence goes on to the loop state through an extra ``#N`` arc (Kaldi's silence
disambiguation symbol, which keeps L_disambig∘G determinizable) and the loop state
(the only one with word outputs or a final weight) gets a ``#0:#0`` self-loop, so G's
backoff symbol ``#0`` passes through (what Kaldi's ``fstaddselfloops`` adds). With
``sil_prob == 0`` there is no silence: one state is start, loop and final.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import kaldifst

Pron = tuple[str, ...]

POSITION_SUFFIXES = ("_B", "_E", "_I", "_S")


def add_word_positions(pron: Sequence[str]) -> Pron:
    """Word-position-dependent phones: ``_S`` for one phone, else ``_B``, ``_I``..., ``_E``."""
    if len(pron) == 1:
        return (f"{pron[0]}_S",)
    return (f"{pron[0]}_B", *(f"{p}_I" for p in pron[1:-1]), f"{pron[-1]}_E")


def add_disambig_symbols(lexicon: Sequence[tuple[str, Pron]]) -> tuple[list[tuple[str, Pron]], int]:
    """Append ``#1``, ``#2``, ... to pronunciations that need disambiguation.

    A pronunciation needs one when another entry has the same phone sequence
    (homophones) or it is a proper prefix of another entry's sequence; the entries of
    one phone sequence get ``#1``, ``#2``, ... in lexicon order (Kaldi's
    ``add_lex_disambig.pl``). Returns the new lexicon and the highest symbol used (0
    when none was needed). Empty pronunciations are not allowed.
    """
    count: dict[Pron, int] = {}
    prefixes: set[Pron] = set()
    for word, pron in lexicon:
        if not pron:
            raise ValueError(f"empty pronunciation for {word!r}")
        count[pron] = count.get(pron, 0) + 1
        for n in range(1, len(pron)):
            prefixes.add(pron[:n])
    last: dict[Pron, int] = {}
    out = []
    max_disambig = 0
    for word, pron in lexicon:
        if count[pron] == 1 and pron not in prefixes:
            out.append((word, pron))
            continue
        k = last.get(pron, 0) + 1
        last[pron] = k
        max_disambig = max(max_disambig, k)
        out.append((word, (*pron, f"#{k}")))
    return out, max_disambig


def make_lexicon_fst(
    lexicon: Iterable[tuple[int, Sequence[int]]],
    *,
    sil_prob: float,
    sil_phone: int,
    sil_disambig: int | None = None,
    self_loop: tuple[int, int] | None = None,
) -> kaldifst.StdVectorFst:
    """Build L (phones -> words) from ``(word_id, [phone_id, ...])`` entries.

    ``sil_phone`` is the optional-silence phone id (also used to recognise silence
    words), ``sil_disambig`` the id of the silence disambiguation symbol and
    ``self_loop`` the ``(phone #0, word #0)`` pair (L_disambig only). The loop gets the
    self-loop: it is the only state that is final or has word outputs, which is where
    Kaldi's ``fstaddselfloops`` puts them. Arcs are left unsorted; see
    :func:`finish_lexicon_fst`.
    """
    if not 0.0 <= sil_prob < 1.0:
        raise ValueError(f"sil_prob must be in [0, 1), got {sil_prob}")
    fst = kaldifst.StdVectorFst()
    start = fst.add_state()
    fst.start = start
    if sil_prob == 0.0:
        loop = start
        sil_state = None
        no_sil_cost = sil_cost = 0.0
    else:
        sil_cost = -math.log(sil_prob)
        no_sil_cost = -math.log(1.0 - sil_prob)
        loop = fst.add_state()
        sil_state = fst.add_state()
        fst.add_arc(start, kaldifst.StdArc(0, 0, no_sil_cost, loop))
        after_sil = loop
        if sil_disambig is not None:
            after_sil = fst.add_state()
            fst.add_arc(after_sil, kaldifst.StdArc(sil_disambig, 0, 0.0, loop))
        fst.add_arc(start, kaldifst.StdArc(sil_phone, 0, sil_cost, after_sil))
        fst.add_arc(sil_state, kaldifst.StdArc(sil_phone, 0, 0.0, after_sil))
    fst.set_final(loop, 0.0)
    if self_loop is not None:
        fst.add_arc(loop, kaldifst.StdArc(self_loop[0], self_loop[1], 0.0, loop))
    for word, pron in lexicon:
        if not pron:
            raise ValueError(f"empty pronunciation for word id {word}")
        state = loop
        olabel = word
        for phone in pron[:-1]:
            nxt = fst.add_state()
            fst.add_arc(state, kaldifst.StdArc(phone, olabel, 0.0, nxt))
            olabel = 0
            state = nxt
        last = pron[-1]
        if sil_state is None or last == sil_phone:
            fst.add_arc(state, kaldifst.StdArc(last, olabel, 0.0, loop))
        else:
            fst.add_arc(state, kaldifst.StdArc(last, olabel, no_sil_cost, loop))
            fst.add_arc(state, kaldifst.StdArc(last, olabel, sil_cost, sil_state))
    return fst


def finish_lexicon_fst(fst: kaldifst.StdVectorFst) -> kaldifst.StdVectorFst:
    """Sort arcs on output labels (what composition with G and ``mkgraph`` expect)."""
    kaldifst.arcsort(fst, sort_type="olabel")
    return fst


def linear_fst(
    ilabels: Sequence[int], olabels: Sequence[int] | None = None
) -> kaldifst.StdVectorFst:
    """A linear FST (an acceptor of ``ilabels`` unless ``olabels`` is given, same length)."""
    olabels = ilabels if olabels is None else olabels
    if len(olabels) != len(ilabels):
        raise ValueError("ilabels and olabels differ in length")
    fst = kaldifst.StdVectorFst()
    state = fst.add_state()
    fst.start = state
    for i, o in zip(ilabels, olabels, strict=True):
        nxt = fst.add_state()
        fst.add_arc(state, kaldifst.StdArc(i, o, 0.0, nxt))
        state = nxt
    fst.set_final(state, 0.0)
    return fst


def best_output(
    fst: kaldifst.StdVectorFst, ilabels: Sequence[int]
) -> tuple[list[int], float] | None:
    """Transduce the label sequence ``ilabels`` with ``fst``: (outputs, cost) of the best path.

    Returns None when ``fst`` does not accept the sequence. Epsilon outputs are dropped.
    """
    path = kaldifst.compose(linear_fst(ilabels), fst)
    if path.num_states == 0:
        return None
    best = kaldifst.shortest_path(path)
    ok, _, olabels, weight = kaldifst.get_linear_symbol_sequence(best)
    if not ok or best.num_states == 0:
        return None
    return list(olabels), float(weight.value)
