"""A backoff n-gram LM as an ARPA file holds it: reading, writing and log10
probabilities (:class:`BackoffLM`), and perplexity as SRILM's ``ngram -ppl``.
:mod:`asr_distill.lang.lm` estimates such models (modified Kneser-Ney).

Perplexity is SRILM's ``ngram -ppl``: ``</s>`` is scored once per sentence; OOV words
are scored as ``<unk>`` when the model has it (otherwise skipped), and their number is
reported. ``ppl = 10 ** (-logprob / (words - skipped_oovs + sentences))``;
``ppl1`` leaves ``</s>`` out of the denominator.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from asr_distill.errors import InputError
from asr_distill.io import atomic_open
from asr_distill.io.text import utf8_lines

BOS = "<s>"
EOS = "</s>"
DEFAULT_UNK = "<unk>"
LOG10_ZERO = -99.0  # the log10 "probability" ARPA files give <s>

NGram = tuple[str, ...]


@dataclasses.dataclass
class BackoffLM:
    """A backoff n-gram model as in an ARPA file.

    ``ngrams[n - 1]`` maps each n-gram to ``(log10 p(w_n | w_1..w_{n-1}), log10 bow)``,
    the backoff weight being None where the file gives none (read as 0).
    """

    ngrams: list[dict[NGram, tuple[float, float | None]]]

    @property
    def order(self) -> int:
        return len(self.ngrams)

    def __contains__(self, word: str) -> bool:
        return (word,) in self.ngrams[0]

    @property
    def vocab(self) -> set[str]:
        return {g[0] for g in self.ngrams[0]}

    def log10_prob(self, word: str, history: Sequence[str]) -> float:
        """``log10 p(word | history)`` by the backoff rule (``-inf`` for a word not in V).

        ``p(w | h) = p*(h w)`` if ``h w`` is listed, else ``bow(h) p(w | h')``; a history
        that is not listed has ``bow = 1``. Only the last N-1 history words count.
        """
        n = self.order
        h = tuple(history[max(0, len(history) - n + 1) :]) if n > 1 else ()
        backoff = 0.0
        while True:
            entry = self.ngrams[len(h)].get((*h, word))
            if entry is not None:
                return backoff + entry[0]
            if not h:
                return -math.inf
            hist = self.ngrams[len(h) - 1].get(h)
            if hist is not None and hist[1] is not None:
                backoff += hist[1]
            h = h[1:]

    def write_arpa(self, path: str | Path) -> None:
        """Write the model as an ARPA file (atomically), n-grams sorted, 7 decimals."""
        with atomic_open(path) as f:
            f.write("\n\\data\\\n")
            for n, table in enumerate(self.ngrams, start=1):
                f.write(f"ngram {n}={len(table)}\n")
            for n, table in enumerate(self.ngrams, start=1):
                f.write(f"\n\\{n}-grams:\n")
                for g in sorted(table):
                    lp, bow = table[g]
                    if bow is None:
                        f.write(f"{lp:.7f}\t{' '.join(g)}\n")
                    else:
                        f.write(f"{lp:.7f}\t{' '.join(g)}\t{bow:.7f}\n")
            f.write("\n\\end\\\n")

    @classmethod
    def read_arpa(cls, path: str | Path) -> BackoffLM:
        """Read an ARPA file (plain, or gzip-compressed when named ``.gz``); malformed
        lines raise :class:`InputError`.

        Text before ``\\data\\`` is ignored; the ``ngram n=count`` header must match
        the sections.
        """
        path = Path(path)
        declared: dict[int, int] = {}
        tables: list[dict[NGram, tuple[float, float | None]]] = []
        state = "preamble"
        for lineno, line in utf8_lines(path):
            line = line.strip()
            if not line:
                continue
            if state == "preamble":
                state = "data" if line == "\\data\\" else state
                continue
            if line == "\\end\\":
                state = "end"
                break
            if line.startswith("\\") and line.endswith("-grams:"):
                if line[1:-7] != str(len(tables) + 1):
                    raise InputError(f"expected \\{len(tables) + 1}-grams:", path, lineno)
                tables.append({})
                state = "ngrams"
                continue
            if state == "data":
                key, _, value = line.partition("=")
                fields = key.split()
                if len(fields) != 2 or fields[0] != "ngram":
                    raise InputError(f"expected 'ngram N=count', got {line!r}", path, lineno)
                try:
                    declared[int(fields[1])] = int(value)
                except ValueError:
                    raise InputError(f"bad ngram count line {line!r}", path, lineno) from None
                continue
            n = len(tables)
            fields = line.split()
            if len(fields) not in (n + 1, n + 2):
                raise InputError(f"expected a {n}-gram line, got {line!r}", path, lineno)
            try:
                lp = float(fields[0])
                bow = float(fields[n + 1]) if len(fields) == n + 2 else None
            except ValueError:
                raise InputError(f"bad number in {line!r}", path, lineno) from None
            tables[-1][tuple(fields[1 : n + 1])] = (lp, bow)
        if state != "end":
            raise InputError("not a complete ARPA file (no \\data\\ or \\end\\)", path)
        actual = {n: len(t) for n, t in enumerate(tables, start=1)}
        if declared != actual:
            raise InputError(f"header declares {declared} n-grams, found {actual}", path)
        if not tables or not tables[0]:
            raise InputError("no unigrams", path)
        return cls(tables)


@dataclasses.dataclass
class PerplexityResult:
    """SRILM ``ngram -ppl`` numbers.

    ``oovs_included``: the model has the unk symbol, so OOV tokens were scored as it
    (otherwise they were skipped). ``log10_prob`` sums over all scored tokens and
    ``</s>``; the ``*_in_vocab`` numbers leave OOV tokens out in either case.
    """

    num_sentences: int
    num_words: int
    num_oovs: int
    oovs_included: bool
    log10_prob: float
    log10_prob_in_vocab: float

    @property
    def ppl(self) -> float:
        skipped = 0 if self.oovs_included else self.num_oovs
        return 10.0 ** (-self.log10_prob / (self.num_words - skipped + self.num_sentences))

    @property
    def ppl1(self) -> float:
        skipped = 0 if self.oovs_included else self.num_oovs
        denom = self.num_words - skipped
        return 10.0 ** (-self.log10_prob / denom) if denom > 0 else math.nan

    @property
    def oov_rate(self) -> float:
        """OOV tokens over running words (sentence ends not counted)."""
        return self.num_oovs / self.num_words if self.num_words else 0.0

    @property
    def ppl_in_vocab(self) -> float:
        denom = self.num_words - self.num_oovs + self.num_sentences
        return 10.0 ** (-self.log10_prob_in_vocab / denom)

    def format(self, name: str = "text") -> str:
        return (
            f"file {name}: {self.num_sentences} sentences, {self.num_words} words, "
            f"{self.num_oovs} OOVs (OOV rate {self.oov_rate:.2%})\n"
            f"logprob= {self.log10_prob:.4f} ppl= {self.ppl:.4f} ppl1= {self.ppl1:.4f}\n"
            f"oovs_included= {'yes' if self.oovs_included else 'no'} "
            f"ppl_in_vocab= {self.ppl_in_vocab:.4f}\n"
        )


def perplexity(
    model: BackoffLM, sentences: Iterable[Sequence[str]], *, unk_symbol: str = DEFAULT_UNK
) -> PerplexityResult:
    """Score ``sentences`` (each with ``</s>``, history starting at ``<s>``).

    A word not in the model (or the unk symbol itself) is an OOV: scored as
    ``unk_symbol`` when the model has it, else skipped (its word stays in the history,
    so the next word backs off).
    """
    has_unk = unk_symbol in model
    keep = max(model.order - 1, 0)
    num_sentences = num_words = num_oovs = 0
    total = total_iv = 0.0
    for words in sentences:
        num_sentences += 1
        num_words += len(words)
        history: list[str] = [BOS]
        for i, word in enumerate((*words, EOS)):
            token = word
            oov = i < len(words) and (word == unk_symbol or word not in model)
            if oov:
                num_oovs += 1
                token = unk_symbol if has_unk else word
            if not oov or has_unk:
                lp = model.log10_prob(token, history)
                total += lp
                if not oov:
                    total_iv += lp
            history.append(token)
            if len(history) > keep:
                del history[: len(history) - keep]
    return PerplexityResult(num_sentences, num_words, num_oovs, has_unk, total, total_iv)
