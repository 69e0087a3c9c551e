"""``train-lm`` / ``lm-perplexity``: interpolated modified Kneser-Ney n-gram LMs in ARPA format.

Estimation follows Chen & Goodman (1998), "An Empirical Study of Smoothing Techniques
for Language Modeling", TR-10-98, Harvard (section 3, "interpolated modified
Kneser-Ney"), with the conventions of SRILM and KenLM (Heafield et al. 2013,
"Scalable Modified Kneser-Ney Language Model Estimation") for sentence boundaries
and the unigram level. Sentences are ``<s> w_1 ... w_m </s>``; ``<s>`` is only ever
a history, never predicted.

Counts. The highest order N uses raw counts ``c``. Every lower order n < N uses
continuation counts (Kneser & Ney 1995)::

    a(w_1..w_n) = N1+(. w_1..w_n) = |{v : c(v w_1..w_n) > 0}|

except n-grams that start with ``<s>``, which no word can precede: they keep their raw
count ``a = c``.

Discounts, three per order n, from the count-of-counts ``n_k`` (the number of n-grams
with ``a = k``)::

    Y = n_1 / (n_1 + 2 n_2)
    D_k = k - (k + 1) Y n_{k+1} / n_k        for k = 1, 2, 3 (D_3 is used for a >= 3)

When some ``n_k`` is zero or a ``D_k`` falls outside ``(0, k)`` (tiny corpora), the
order falls back to :attr:`LmConfig.discount_fallback` with a warning (KenLM's
``--discount_fallback``).

Probabilities, for a history ``h`` and its shortened history ``h'`` (``h`` without
its first word)::

    p(w | h) = max(a(h w) - D(a(h w)), 0) / S(h) + gamma(h) p(w | h')
    S(h)     = sum_v a(h v)
    gamma(h) = (D_1 N_1(h .) + D_2 N_2(h .) + D_3 N_3+(h .)) / S(h)

where ``N_k(h .)`` counts the words v with ``a(h v) = k``. The unigram level is
interpolated with the uniform distribution over the vocabulary V (every word except
``<s>``, with ``</s>`` and ``<unk>``): ``p(w) = max(a(w) - D(a(w)), 0) / S + gamma / |V|``,
so ``<unk>`` and vocabulary words never seen in training get non-zero probability.

ARPA. Every n-gram seen in training is written with ``log10 p(w | h)``; a history's
backoff weight is ``gamma(h)``, so the standard backoff rule
``p(w | h) = bow(h) p(w | h')`` for unseen ``h w`` reproduces the interpolated model
exactly and every history's distribution sums to one.

Pruning (``prune = [0, t_2, t_3, ...]``, KenLM's ``--prune``): an n-gram of order
n >= 2 whose raw count is ``<= t_n`` is dropped (the last threshold repeats for higher
orders; thresholds must not decrease, so a kept n-gram's prefix and suffix are always
kept too). Kept n-grams keep their probability; each backoff weight is then recomputed
so that the history's distribution sums to one again (Stolcke 1998, "Entropy-based
pruning of backoff language models", eq. 5)::

    bow(h) = (1 - sum_{w: h w kept} p(w | h)) / (1 - sum_{w: h w kept} p_bo(w | h'))
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tqdm import tqdm

from asr_distill.errors import InputError
from asr_distill.io import atomic_open
from asr_distill.io.step import step_log
from asr_distill.io.text import utf8_lines
from asr_distill.lang.arpa import (
    BOS,
    DEFAULT_UNK,
    EOS,
    LOG10_ZERO,
    BackoffLM,
    NGram,
    PerplexityResult,
    perplexity,
)

log = logging.getLogger(__name__)

ARPA_NAME = "lm.arpa"
PERPLEXITY_NAME = "perplexity.txt"


@dataclasses.dataclass
class LmConfig:
    """Options of ``train-lm``.

    order: n-gram order N (3).
    prune: per-order raw-count thresholds ``[0, t_2, ..., t_N]``; an n-gram of order
        n >= 2 with count ``<= t_n`` is dropped. Shorter lists repeat the last value;
        empty (the default) keeps everything. The first value must be 0 (unigrams are
        never pruned) and values must not decrease.
    vocab: optional vocabulary file (first field of each line, so a Kaldi
        ``words.txt`` works; ``<eps>``, ``<s>``, ``</s>`` and ``#N`` are ignored). Training
        words outside it become ``unk_symbol``; its words unseen in training still get
        unigram probability.
    unk_symbol: the unknown-word token, always in the model ("<unk>").
    kaldi_text: input lines start with an utterance id (Kaldi ``text``), stripped.
    discount_fallback: ``[D_1, D_2, D_3+]`` used for an order whose count-of-counts
        cannot give valid discounts (KenLM's ``--discount_fallback`` values).
    """

    order: int = 3
    prune: list[int] = dataclasses.field(default_factory=list)
    vocab: str | None = None
    unk_symbol: str = DEFAULT_UNK
    kaldi_text: bool = False
    discount_fallback: list[float] = dataclasses.field(default_factory=lambda: [0.5, 1.0, 1.5])

    def __post_init__(self) -> None:
        if self.order < 1:
            raise ValueError(f"order must be >= 1, got {self.order}")
        self.prune = [int(t) for t in self.prune]
        if self.prune:
            if len(self.prune) > self.order:
                raise ValueError(f"prune has {len(self.prune)} values for order {self.order}")
            if self.prune[0] != 0:
                raise ValueError("prune: unigrams are never pruned, the first value must be 0")
            if any(b < a for a, b in zip(self.prune, self.prune[1:], strict=False)):
                raise ValueError(f"prune thresholds must not decrease: {self.prune}")
        self.discount_fallback = [float(d) for d in self.discount_fallback]
        if len(self.discount_fallback) != 3 or not all(
            0 < d < k for k, d in enumerate(self.discount_fallback, start=1)
        ):
            raise ValueError(
                f"discount_fallback must be [D1, D2, D3+] with 0 < D_k < k, "
                f"got {self.discount_fallback}"
            )
        if (
            self.unk_symbol in (BOS, EOS)
            or not self.unk_symbol
            or self.unk_symbol.split() != [self.unk_symbol]
        ):
            raise ValueError(f"bad unk_symbol {self.unk_symbol!r}")

    def prune_threshold(self, n: int) -> int:
        """The raw-count threshold for order ``n`` (0: keep all)."""
        if not self.prune or n < 2:
            return 0
        return self.prune[min(n, len(self.prune)) - 1]


# --------------------------------------------------------------------------- input text


def iter_sentences(paths: Iterable[str | Path], *, kaldi_text: bool = False) -> Iterator[list[str]]:
    """Yield the words of each non-blank line of each text file, in order.

    Files named ``.gz`` are read through gzip. With ``kaldi_text`` the first field
    (utterance id) is dropped. A path that is a
    directory is a Kaldi data dir: its ``text`` is read with the ids dropped, whatever
    ``kaldi_text`` says (so plain LM text and Kaldi transcripts mix). A leading ``<s>`` and
    a trailing ``</s>`` are stripped; either anywhere else is an error. Raises
    :class:`InputError` naming the file and line for a line that is not UTF-8, and
    naming the file for a file without sentences.
    """
    for path in map(Path, paths):
        strip_id = kaldi_text
        if path.is_dir():
            path, strip_id = path / "text", True
        num = 0
        for lineno, line in utf8_lines(path):
            words = line.split()
            if strip_id:
                words = words[1:]
            if words and words[0] == BOS:
                words = words[1:]
            if words and words[-1] == EOS:
                words = words[:-1]
            if not words:
                continue
            if BOS in words or EOS in words:
                raise InputError(f"{BOS} or {EOS} inside a sentence", path, lineno)
            num += 1
            yield words
        if num == 0:
            raise InputError("no sentences (empty file)", path)


def read_vocab(path: str | Path) -> set[str]:
    """Words of a vocabulary file: the first field of each line (``words.txt`` works).

    ``<eps>``, ``<s>``, ``</s>`` and disambiguation symbols ``#0``, ``#1``, ... are skipped.
    """
    path = Path(path)
    vocab: set[str] = set()
    for _, line in utf8_lines(path):
        fields = line.split()
        if not fields:
            continue
        word = fields[0]
        if word in ("<eps>", BOS, EOS) or (word[0] == "#" and word[1:].isdigit()):
            continue
        vocab.add(word)
    if not vocab:
        raise InputError("empty vocabulary", path)
    return vocab


# --------------------------------------------------------------------------- counting


@dataclasses.dataclass
class NgramCounts:
    """Raw n-gram counts of a corpus: ``counts[n - 1][(w_1, ..., w_n)]``.

    No n-gram ends in ``<s>``. ``vocab`` holds every word the model will list
    (training words or the vocabulary file, plus ``<s>``, ``</s>`` and the unk symbol).
    """

    counts: list[Counter]
    vocab: set[str]
    num_sentences: int
    num_words: int
    num_mapped_to_unk: int


def count_ngrams(
    sentences: Iterable[Sequence[str]],
    order: int,
    *,
    vocab: set[str] | None = None,
    unk_symbol: str = DEFAULT_UNK,
) -> NgramCounts:
    """Count all n-grams of orders 1..``order`` of ``<s> sentence </s>``.

    With ``vocab``, words outside it are counted as ``unk_symbol``.
    """
    counts = [Counter() for _ in range(order)]
    words_seen: set[str] = set()
    num_sentences = num_words = num_unk = 0
    for words in sentences:
        if vocab is not None:
            num_unk += sum(1 for w in words if w not in vocab)
            words = [w if w in vocab else unk_symbol for w in words]
        toks = (BOS, *words, EOS)
        num_sentences += 1
        num_words += len(words)
        words_seen.update(words)
        counts[0].update(zip(toks[1:]))  # unigrams: <s> is never predicted
        for n in range(2, min(order, len(toks)) + 1):
            counts[n - 1].update(zip(*(toks[k:] for k in range(n)), strict=False))  # windows
    full_vocab = set(vocab if vocab is not None else words_seen) | {BOS, EOS, unk_symbol}
    return NgramCounts(counts, full_vocab, num_sentences, num_words, num_unk)


def adjusted_counts(counts: Sequence[Counter]) -> list[Counter]:
    """Kneser-Ney counts: raw at the highest order, continuation counts below.

    ``a(g) = |{v : c(v g) > 0}|`` for orders below the highest, except ``a(g) = c(g)``
    for n-grams starting with ``<s>``.
    """
    out = list(counts)
    for n in range(len(counts) - 1, 0, -1):  # n: order of the table being built
        cont = Counter(g[1:] for g in counts[n])
        for g, c in counts[n - 1].items():
            if g[0] == BOS:
                cont[g] = c
        out[n - 1] = cont
    return out


def count_of_counts(adjusted: Counter, max_count: int = 4) -> tuple[int, ...]:
    """``(n_1, ..., n_max_count)``: how many n-grams have adjusted count exactly k."""
    hist = Counter(a for a in adjusted.values() if a <= max_count)
    return tuple(hist.get(k, 0) for k in range(1, max_count + 1))


def modified_kn_discounts(coc: Sequence[int]) -> tuple[float, float, float] | None:
    """Chen & Goodman's estimates ``D_k = k - (k+1) Y n_{k+1}/n_k``, ``Y = n_1/(n_1+2 n_2)``.

    ``coc`` is ``(n_1, n_2, n_3, n_4)``. Returns ``(D_1, D_2, D_3+)``, or None when a
    count-of-counts is zero or a discount falls outside ``(0, k)``.
    """
    n1, n2, n3, n4 = coc
    if min(n1, n2, n3, n4) <= 0:
        return None
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if not all(0 < dk < k for k, dk in enumerate(d, start=1)):
        return None
    return d


# --------------------------------------------------------------------------- estimation


@dataclasses.dataclass
class KneserNeyStats:
    """What estimation did, per order n (index n - 1)."""

    count_of_counts: list[tuple[int, ...]]
    discounts: list[tuple[float, float, float]]
    used_fallback: list[bool]
    num_pruned: list[int]
    num_ngrams: list[int]


def estimate_kn(counts: NgramCounts, config: LmConfig) -> tuple[BackoffLM, KneserNeyStats]:
    """Interpolated modified Kneser-Ney model of order ``config.order`` from raw counts.

    See the module docstring for the formulas. Returns the model (ARPA-ready) and the
    per-order count-of-counts, discounts and pruning numbers.
    """
    order = config.order
    if len(counts.counts) != order:
        raise ValueError(f"counts are of order {len(counts.counts)}, config says {order}")
    if counts.num_sentences == 0:
        raise ValueError("no sentences to train on")
    adjusted = adjusted_counts(counts.counts)
    stats = KneserNeyStats([], [], [], [], [])
    for n in range(1, order + 1):
        coc = count_of_counts(adjusted[n - 1])
        d = modified_kn_discounts(coc)
        stats.count_of_counts.append(coc)
        stats.used_fallback.append(d is None)
        if d is None:
            d = tuple(config.discount_fallback)
            log.warning(
                "order %d: count-of-counts %s give no valid discounts; using %s",
                n,
                coc,
                list(d),
            )
        stats.discounts.append(d)

    # Unigrams: discounted continuation counts interpolated with the uniform distribution.
    vocab = sorted(counts.vocab - {BOS})
    disc = (0.0, *stats.discounts[0])  # D(a) = disc[min(a, 3)]
    a1 = adjusted[0]
    total = sum(a1.values())
    gamma0 = sum(disc[min(a, 3)] for a in a1.values()) / total
    probs: dict[NGram, float] = {}
    for w in vocab:
        a = a1.get((w,), 0)
        probs[(w,)] = (a - disc[min(a, 3)]) / total + gamma0 / len(vocab)
    unigrams: dict[NGram, tuple[float, float | None]] = {
        g: (math.log10(p), None) for g, p in probs.items()
    }
    unigrams[(BOS,)] = (LOG10_ZERO, None)
    model = BackoffLM([unigrams])
    stats.num_pruned.append(0)
    stats.num_ngrams.append(len(unigrams))

    pruning = any(config.prune_threshold(n) > 0 for n in range(2, order + 1))
    lower = probs
    for n in range(2, order + 1):
        an = adjusted[n - 1]
        disc = (0.0, *stats.discounts[n - 1])
        denom: dict[NGram, int] = defaultdict(int)
        mass: dict[NGram, float] = defaultdict(float)  # sum_w D(a(h w)) = gamma(h) S(h)
        for g, a in an.items():
            denom[g[:-1]] += a
            mass[g[:-1]] += disc[min(a, 3)]
        probs = {
            g: (a - disc[min(a, 3)]) / denom[g[:-1]] + mass[g[:-1]] / denom[g[:-1]] * lower[g[1:]]
            for g, a in an.items()
        }
        threshold = config.prune_threshold(n)
        raw = counts.counts[n - 1]
        kept = [g for g in an if raw[g] > threshold]
        stats.num_pruned.append(len(an) - len(kept))
        stats.num_ngrams.append(len(kept))
        model.ngrams.append({g: (math.log10(probs[g]), None) for g in kept})
        children: dict[NGram, list[NGram]] = defaultdict(list)
        for g in kept:
            children[g[:-1]].append(g)
        histories = model.ngrams[n - 2]
        for h, gs in children.items():
            if pruning:
                num = 1.0 - sum(probs[g] for g in gs)
                den = 1.0 - sum(10.0 ** model.log10_prob(g[-1], h[1:]) for g in gs)
                bow = num / den if num > 0 and den > 0 else 1.0
            else:
                bow = mass[h] / denom[h]
            histories[h] = (histories[h][0], math.log10(bow))
        lower = probs
    return model, stats


def train_kn_lm(
    sentences: Iterable[Sequence[str]], config: LmConfig | None = None
) -> tuple[BackoffLM, KneserNeyStats, NgramCounts]:
    """Count ``sentences`` and estimate the model (reads ``config.vocab`` if set)."""
    config = config or LmConfig()
    vocab = (read_vocab(config.vocab) | {config.unk_symbol}) if config.vocab else None
    counts = count_ngrams(sentences, config.order, vocab=vocab, unk_symbol=config.unk_symbol)
    model, stats = estimate_kn(counts, config)
    return model, stats, counts


# --------------------------------------------------------------------------- perplexity


def compute_perplexity(
    lm_path: str | Path,
    text_paths: Sequence[str | Path],
    *,
    kaldi_text: bool = False,
    unk_symbol: str = DEFAULT_UNK,
) -> PerplexityResult:
    """Perplexity of the ARPA model ``lm_path`` on text files (one sentence a line)."""
    model = BackoffLM.read_arpa(lm_path)
    return perplexity(
        model, iter_sentences(text_paths, kaldi_text=kaldi_text), unk_symbol=unk_symbol
    )


# --------------------------------------------------------------------------- the step


@dataclasses.dataclass
class TrainLmSummary:
    """Result of :func:`train_lm`; ``stats``/``counts`` are None for a no-op re-run."""

    out_dir: Path
    arpa_path: Path
    stats: KneserNeyStats | None
    counts: NgramCounts | None
    dev_perplexity: PerplexityResult | None


def train_lm(
    text_paths: Sequence[str | Path],
    out_dir: str | Path,
    config: LmConfig | None = None,
    *,
    dev_text_paths: Sequence[str | Path] = (),
    force: bool = False,
) -> TrainLmSummary:
    """Train a modified Kneser-Ney LM on text files into the directory ``out_dir``.

    Writes ``lm.arpa``, ``config.yaml``, ``log/train-lm.log``, ``perplexity.txt`` (when
    ``dev_text_paths`` are given) and a ``.done`` marker; a finished ``out_dir`` is left
    alone unless ``force``.
    """
    config = config or LmConfig()
    out_dir = Path(out_dir)
    arpa_path = out_dir / ARPA_NAME
    with step_log(out_dir, "train-lm.log", force=force, config=config) as run:
        if not run:
            return TrainLmSummary(out_dir, arpa_path, None, None, None)
        log.info("train-lm: %s -> %s (%s)", [str(p) for p in text_paths], out_dir, config)
        sentences = iter_sentences(text_paths, kaldi_text=config.kaldi_text)
        model, stats, counts = train_kn_lm(
            tqdm(sentences, desc="train-lm count", unit="sent", disable=None), config
        )
        log.info(
            "%d sentences, %d words, vocabulary %d (%d tokens mapped to %s)",
            counts.num_sentences,
            counts.num_words,
            len(counts.vocab),
            counts.num_mapped_to_unk,
            config.unk_symbol,
        )
        for n in range(1, config.order + 1):
            d = stats.discounts[n - 1]
            log.info(
                "order %d: %d n-grams (%d pruned), count-of-counts %s, D1=%.4f D2=%.4f D3+=%.4f%s",
                n,
                stats.num_ngrams[n - 1],
                stats.num_pruned[n - 1],
                stats.count_of_counts[n - 1],
                *d,
                " (fallback)" if stats.used_fallback[n - 1] else "",
            )
        model.write_arpa(arpa_path)
        log.info("wrote %s", arpa_path)
        result = None
        if dev_text_paths:
            result = perplexity(
                BackoffLM.read_arpa(arpa_path),  # score what was written, as lm-perplexity does
                iter_sentences(dev_text_paths, kaldi_text=config.kaldi_text),
                unk_symbol=config.unk_symbol,
            )
            report = result.format(" ".join(map(str, dev_text_paths)))
            with atomic_open(out_dir / PERPLEXITY_NAME) as f:
                f.write(report)
            log.info("dev perplexity:\n%s", report.rstrip())
    return TrainLmSummary(out_dir, arpa_path, stats, counts, result)
