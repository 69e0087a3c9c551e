"""Decision-tree questions and roots: lang-dir files ``phones/roots.int``,
``phones/sets.int`` and ``phones/extra_questions.int``, Kaldi's ``cluster-phones``
(automatic questions) and ``compile-questions`` (questions per event key).

Questions are sets of event values: phone sets for the context keys ``0..N-1``
(``1`` = the centre phone of a triphone) and sets of pdf-classes for key -1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from asr_distill.errors import InputError
from asr_distill.hmm.tree_stats import DEFAULT_VAR_FLOOR, PDF_CLASS_KEY, TreeStats, gauss_objf

#: Questions per Kaldi event key: key -> list of sorted value sets.
Questions = Mapping[int, Sequence[Sequence[int]]]
#: A root of the tree: (phones, shared, split) as in ``roots.int``.
Root = tuple[Sequence[int], bool, bool]


def _int_tokens(tokens: list[str], path: str | Path, lineno: int) -> list[int]:
    try:
        values = [int(t) for t in tokens]
    except ValueError:
        raise InputError(f"expected integers, got {' '.join(tokens)!r}", path, lineno) from None
    if any(v < 0 for v in values):
        raise InputError("negative id", path, lineno)
    return values


def read_questions(path: str | Path) -> list[list[int]]:
    """Read integer sets, one a line (``phones/sets.int``, ``extra_questions.int``,
    a questions file). Each set is returned sorted; duplicates in a line are an error.
    Blank lines are skipped.
    """
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            tokens = line.split()
            if not tokens:
                continue
            values = _int_tokens(tokens, path, lineno)
            if len(set(values)) != len(values):
                raise InputError("duplicate id in a set", path, lineno)
            out.append(sorted(values))
    return out


def read_roots(path: str | Path) -> list[tuple[list[int], bool, bool]]:
    """Read ``phones/roots.int``: lines ``{shared|not-shared} {split|not-split} P1 P2 ...``.

    Returns ``(phones, shared, split)`` per line: the phones of a line share one tree
    root; ``shared`` means all their pdf-classes share it too (the tree may then split
    on the pdf-class), ``not-shared`` gives each pdf-class its own root; ``not-split``
    roots are never split. A phone may appear in one line only.
    """
    out: list[tuple[list[int], bool, bool]] = []
    seen: set[int] = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) < 3:
                raise InputError(
                    "expected '{shared|not-shared} {split|not-split} phones'", path, lineno
                )
            shared_tok, split_tok = tokens[:2]
            if shared_tok not in ("shared", "not-shared"):
                raise InputError(f"expected shared or not-shared, got {shared_tok!r}", path, lineno)
            if split_tok not in ("split", "not-split"):
                raise InputError(f"expected split or not-split, got {split_tok!r}", path, lineno)
            phones = _int_tokens(tokens[2:], path, lineno)
            if 0 in phones:
                raise InputError("phone 0 (epsilon) cannot have a root", path, lineno)
            if len(set(phones)) != len(phones):
                raise InputError("duplicate phone in a root", path, lineno)
            dup = seen.intersection(phones)
            if dup:
                raise InputError(f"phone(s) in more than one root: {sorted(dup)}", path, lineno)
            seen.update(phones)
            out.append((sorted(phones), shared_tok == "shared", split_tok == "split"))
    if not out:
        raise InputError("no roots", path)
    return out


def _two_means(
    counts: np.ndarray,
    sums: np.ndarray,
    sumsqs: np.ndarray,
    rng: np.random.Generator,
    num_tries: int,
    var_floor: float,
) -> np.ndarray:
    """Split items into two non-empty clusters maximising the summed Gaussian objf.

    From random starts, move the item whose move to the other cluster gains most,
    until no move gains (a 2-class k-means on the likelihood). Returns ``(m,)`` bool:
    True for cluster 1.
    """
    m = len(counts)
    best, best_objf = None, -np.inf
    for _ in range(num_tries):
        assign = rng.permutation(m) < m // 2  # (m,)
        for _step in range(20 * m):
            c1, s1, q1 = counts[assign].sum(), sums[assign].sum(0), sumsqs[assign].sum(0)
            c0, s0, q0 = counts.sum() - c1, sums.sum(0) - s1, sumsqs.sum(0) - q1
            base = gauss_objf(np.array([c0, c1]), np.stack([s0, s1]), np.stack([q0, q1]), var_floor)
            # Moving item i from its cluster a to b: a loses it, b gains it.
            sign = np.where(assign, -1.0, 1.0)[:, None]  # (m, 1): +1 moves into cluster 1
            new1 = gauss_objf(
                c1 + sign[:, 0] * counts, s1 + sign * sums, q1 + sign * sumsqs, var_floor
            )
            new0 = gauss_objf(
                c0 - sign[:, 0] * counts, s0 - sign * sums, q0 - sign * sumsqs, var_floor
            )
            gain = new0 + new1 - base.sum()  # (m,)
            size1 = assign.sum()
            # Keep both clusters non-empty.
            gain[assign & (size1 == 1)] = -np.inf
            gain[~assign & (m - size1 == 1)] = -np.inf
            i = int(np.argmax(gain))
            if gain[i] <= 1e-9 * (1.0 + abs(base.sum())):
                break
            assign[i] = ~assign[i]
        c1 = counts[assign].sum()
        objf = gauss_objf(
            np.array([counts.sum() - c1, c1]),
            np.stack([sums.sum(0) - sums[assign].sum(0), sums[assign].sum(0)]),
            np.stack([sumsqs.sum(0) - sumsqs[assign].sum(0), sumsqs[assign].sum(0)]),
            var_floor,
        ).sum()
        if objf > best_objf + 1e-9:
            best, best_objf = assign.copy(), objf
    return best


def cluster_phones(
    stats: TreeStats,
    phone_sets: Sequence[Sequence[int]],
    *,
    pdf_class: int | None = None,
    num_tries: int = 10,
    seed: int = 0,
    var_floor: float = DEFAULT_VAR_FLOOR,
) -> list[list[int]]:
    """Automatic questions by top-down clustering of phone sets (Kaldi's cluster-phones).

    The stats of each phone set (e.g. a line of ``phones/sets.int``: a base phone and
    its word-position / stress variants) are pooled over all contexts (of the central
    phone; only frames of ``pdf_class`` when given, all pdf-classes when None; Kaldi's
    default is 1, the middle state of a 3-state HMM). The sets are then split in two
    by a 2-class k-means on the Gaussian likelihood (best of ``num_tries`` random
    starts), recursively, until each cluster holds one set. Every node of this binary
    hierarchy (the root included) gives a question: the union of its phone sets.

    Returns:
        The questions, each a sorted phone list, in pre-order of the hierarchy.
    """
    if not phone_sets or any(len(s) == 0 for s in phone_sets):
        raise ValueError("cluster_phones needs non-empty phone sets")
    all_phones = [p for s in phone_sets for p in s]
    if len(set(all_phones)) != len(all_phones):
        raise ValueError("a phone is in more than one phone set")
    center = stats.events[:, stats.central_position]
    keep = np.ones(stats.num_events, dtype=bool)
    if pdf_class is not None:
        keep = stats.events[:, stats.context_width] == pdf_class
    size = max(max(all_phones), int(center.max(initial=0))) + 1
    set_of_phone = np.full(size, -1)
    for i, s in enumerate(phone_sets):
        set_of_phone[list(s)] = i
    k = len(phone_sets)
    which = set_of_phone[center]
    keep &= which >= 0
    dim = stats.dim
    counts = np.bincount(which[keep], weights=stats.counts[keep], minlength=k)  # (k,)
    sums = np.zeros((k, dim))
    sumsqs = np.zeros((k, dim))
    np.add.at(sums, which[keep], stats.sums[keep])
    np.add.at(sumsqs, which[keep], stats.sumsqs[keep])

    rng = np.random.default_rng(seed)
    questions: list[list[int]] = []

    def recurse(items: np.ndarray) -> None:
        questions.append(sorted(p for i in items for p in phone_sets[i]))
        if len(items) < 2:
            return
        in1 = _two_means(counts[items], sums[items], sumsqs[items], rng, num_tries, var_floor)
        recurse(items[~in1])
        recurse(items[in1])

    recurse(np.arange(k))
    return questions


def make_questions(
    stats: TreeStats,
    phone_sets: Sequence[Sequence[int]],
    extra_questions: Sequence[Sequence[int]],
    phone2num_pdf_classes: Sequence[int],
    *,
    pdf_class: int | None = None,
    seed: int = 0,
) -> dict[int, list[list[int]]]:
    """Questions per event key, like Kaldi's cluster-phones + compile-questions.

    Phone questions (for every context key ``0..N-1``, the centre included) are the
    :func:`cluster_phones` hierarchy of ``phone_sets`` plus ``extra_questions``
    (``phones/extra_questions.int``), duplicates removed. For the pdf-class key (-1)
    the questions are the prefixes ``{0}, {0,1}, ..., {0..M-2}`` with M the largest
    number of pdf-classes of any phone (``phone2num_pdf_classes``, indexed by phone,
    e.g. ``HmmTopology.get_phone_to_num_pdf_classes()``; entry 0 is ignored).

    Returns:
        ``{key: [sorted value list, ...]}`` with keys ``0..N-1`` and -1.
    """
    phone_qs = cluster_phones(stats, phone_sets, pdf_class=pdf_class, seed=seed)
    uniq: dict[tuple[int, ...], None] = {}
    for q in [*phone_qs, *extra_questions]:
        if q:
            uniq[tuple(sorted(set(q)))] = None
    phone_list = [list(q) for q in uniq]
    max_classes = max((int(n) for n in list(phone2num_pdf_classes)[1:]), default=1)
    out = {key: [list(q) for q in phone_list] for key in range(stats.context_width)}
    out[PDF_CLASS_KEY] = [list(range(i + 1)) for i in range(max_classes - 1)]
    return out
