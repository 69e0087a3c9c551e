"""``prepare-lang``: a Kaldi lang directory from a dict dir (``utils/prepare_lang.sh``).

Layout written (all symbol files in Kaldi's formats)::

    phones.txt      <eps> 0, silence phones, non-silence phones, #0 .. #N
    words.txt       <eps> 0, words sorted (C locale), #0, <s>, </s>
    oov.txt oov.int the word OOVs map to
    topo            HMM topologies: 3-state left-to-right for non-silence phones, the
                    5-state silence model of Kaldi's gen_topo.pl for silence phones
    L.fst           phones -> words with optional silence (training graphs)
    L_disambig.fst  with disambiguation symbols and a #0:#0 loop (for HCLG)
    phones/{silence,nonsilence,optional_silence,disambig,context_indep}.{txt,int,csl}
    phones/{sets,extra_questions,roots}.{txt,int}
    phones/word_boundary.{txt,int}      (position-dependent phones only)
    phones/align_lexicon.{txt,int}      "WORD WORD PH1 PH2 ..." and "<eps> <eps> SIL"
    phones/wdisambig.txt, wdisambig_phones.int, wdisambig_words.int   (#0)
    config.yaml, log/prepare-lang.log, .done

Word-position-dependent phones (default): every non-silence phone ``P`` becomes
``P_B``, ``P_E``, ``P_I``, ``P_S`` (begin, end, internal, singleton); silence phones
keep their bare form (used for optional silence between words) and get the four
variants too (used inside words such as ``<UNK> SPN_S``). ``phones/sets.txt`` groups
all variants of a line of the dict's phone lists; ``roots.txt`` gives each set its own
tree root, "shared split" (Kaldi's default with ``share_silence_phones=false``).
``extra_questions.txt`` is the dict's extra questions mapped to all variants plus one
question per word position for non-silence and for silence phones.

FSTs are OpenFst binary files, arc-sorted on output labels as Kaldi's are
(``fstarcsort --sort_type=olabel``); their symbol ids are those of phones.txt and
words.txt.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from asr_distill.errors import InputError
from asr_distill.io import atomic_open, atomic_path
from asr_distill.io.step import step_log
from asr_distill.lang.dictionary import DictDir, check_word, read_dict_dir
from asr_distill.lang.lexicon_fst import (
    POSITION_SUFFIXES,
    add_disambig_symbols,
    add_word_positions,
    finish_lexicon_fst,
    make_lexicon_fst,
)
from asr_distill.lang.validate import (
    BOUNDARY_OF_SUFFIX,
    LangDir,
    read_symbol_table,
    read_topo,
    validate_lang,
)

__all__ = [
    "LangConfig",
    "LangDir",
    "PrepareLangSummary",
    "make_topo",
    "prepare_lang",
    "read_symbol_table",
    "read_topo",
    "validate_lang",
    "write_symbol_table",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LangConfig:
    """Options of :func:`prepare_lang` (defaults in brackets).

    oov_word: word that OOVs map to; must be in the lexicon [<UNK>].
    position_dependent_phones: add _B/_E/_I/_S word-position variants [True].
    sil_prob: probability of optional silence before/after each word; 0 disables [0.5].
    num_sil_states: HMM states of silence phones (Kaldi's default) [5].
    num_nonsil_states: HMM states of non-silence phones [3].
    """

    oov_word: str = "<UNK>"
    position_dependent_phones: bool = True
    sil_prob: float = 0.5
    num_sil_states: int = 5
    num_nonsil_states: int = 3

    def __post_init__(self) -> None:
        check_word(self.oov_word)
        if not 0.0 <= self.sil_prob < 1.0:
            raise InputError(f"sil_prob must be in [0, 1), got {self.sil_prob}")
        if self.num_sil_states < 1:
            raise InputError(f"num_sil_states must be >= 1, got {self.num_sil_states}")
        if self.num_nonsil_states < 1:
            raise InputError(f"num_nonsil_states must be >= 1, got {self.num_nonsil_states}")


@dataclasses.dataclass
class PrepareLangSummary:
    """Result of :func:`prepare_lang` (None for a no-op re-run)."""

    lang_dir: Path
    num_phones: int
    num_words: int
    num_disambig: int


# --------------------------------------------------------------------------- symbol tables


def write_symbol_table(path: str | Path, symbols: Sequence[str]) -> dict[str, int]:
    """Write ``symbol id`` lines with ids 0, 1, ... in order; returns the table."""
    table = {}
    with atomic_open(path) as f:
        for i, s in enumerate(symbols):
            if s in table:
                raise InputError(f"symbol {s!r} twice in the symbol table", path)
            table[s] = i
            f.write(f"{s} {i}\n")
    return table


def _write_lines(path: Path, rows: Iterable[str]) -> None:
    with atomic_open(path) as f:
        for row in rows:
            f.write(row + "\n")


def _write_phone_list(phones_dir: Path, name: str, phones: Sequence[str], ids: dict) -> None:
    _write_lines(phones_dir / f"{name}.txt", phones)
    _write_lines(phones_dir / f"{name}.int", (str(ids[p]) for p in phones))
    with atomic_open(phones_dir / f"{name}.csl") as f:
        f.write(":".join(str(ids[p]) for p in phones) + "\n")


def _write_phone_sets(phones_dir: Path, name: str, sets: Sequence[Sequence[str]], ids) -> None:
    _write_lines(phones_dir / f"{name}.txt", (" ".join(s) for s in sets))
    _write_lines(phones_dir / f"{name}.int", (" ".join(str(ids[p]) for p in s) for s in sets))


# --------------------------------------------------------------------------- topology


def make_topo(
    nonsilence_ids: Sequence[int],
    silence_ids: Sequence[int],
    *,
    num_nonsil_states: int = 3,
    num_sil_states: int = 5,
) -> str:
    """Kaldi ``topo`` text, as ``utils/gen_topo.pl`` makes it.

    Non-silence: ``num_nonsil_states`` left-to-right states, self-loop 0.75, forward
    0.25. Silence (with ``num_sil_states > 1``): the first state may go to any of the
    first ``num_sil_states - 1`` states, the middle ones to any state but the first, all
    with equal probability; the last emitting state loops with 0.75 and leaves with 0.25.
    """
    lines = ["<Topology>", "<TopologyEntry>", "<ForPhones>"]
    lines.append(" ".join(map(str, nonsilence_ids)))
    lines.append("</ForPhones>")
    for s in range(num_nonsil_states):
        lines.append(
            f"<State> {s} <PdfClass> {s} <Transition> {s} 0.75 <Transition> {s + 1} 0.25 </State>"
        )
    lines += [f"<State> {num_nonsil_states} </State>", "</TopologyEntry>"]
    lines += ["<TopologyEntry>", "<ForPhones>", " ".join(map(str, silence_ids)), "</ForPhones>"]
    n = num_sil_states
    if n == 1:
        lines.append("<State> 0 <PdfClass> 0 <Transition> 0 0.75 <Transition> 1 0.25 </State>")
    else:
        p = 1.0 / (n - 1)
        first = " ".join(f"<Transition> {t} {p:g}" for t in range(n - 1))
        lines.append(f"<State> 0 <PdfClass> 0 {first} </State>")
        middle = " ".join(f"<Transition> {t} {p:g}" for t in range(1, n))
        for s in range(1, n - 1):
            lines.append(f"<State> {s} <PdfClass> {s} {middle} </State>")
        last = n - 1
        lines.append(
            f"<State> {last} <PdfClass> {last} <Transition> {last} 0.75 "
            f"<Transition> {n} 0.25 </State>"
        )
    lines += [f"<State> {n} </State>", "</TopologyEntry>", "</Topology>"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- prepare-lang


def _phone_map(d: DictDir, position_dependent: bool) -> dict[str, list[str]]:
    """Base phone -> its variants in the lang dir (Kaldi's phone_map.txt)."""
    out: dict[str, list[str]] = {}
    for line in d.silence_phones:
        for p in line:
            out[p] = [p, *(p + s for s in POSITION_SUFFIXES)] if position_dependent else [p]
    for line in d.nonsilence_phones:
        for p in line:
            out[p] = [p + s for s in POSITION_SUFFIXES] if position_dependent else [p]
    return out


def _expand(phone_map: dict[str, list[str]], phones: Iterable[str]) -> list[str]:
    return [v for p in phones for v in phone_map[p]]


def prepare_lang(
    dict_dir: str | Path,
    lang_dir: str | Path,
    config: LangConfig | None = None,
    *,
    force: bool = False,
) -> PrepareLangSummary | None:
    """Build a Kaldi lang dir from a dict dir (see the module docstring for the files).

    A finished ``lang_dir`` is left alone (returns None) unless ``force``. Raises
    :class:`InputError` for a bad dict dir or an OOV word missing from the lexicon.
    """
    config = config or LangConfig()
    lang_dir = Path(lang_dir)
    # A rebuild must not keep files that no longer match (an old G, word boundaries).
    stale = (".done_G", "G.fst", "phones/word_boundary.txt", "phones/word_boundary.int")
    with step_log(lang_dir, "prepare-lang.log", force=force, config=config, clear=stale) as run:
        if not run:
            return None
        (lang_dir / "phones").mkdir(parents=True, exist_ok=True)
        log.info("prepare-lang: %s -> %s (%s)", dict_dir, lang_dir, config)
        summary = _build_lang(read_dict_dir(dict_dir), lang_dir, config, Path(dict_dir))
        validate_lang(lang_dir)
    log.info(
        "%s: %d phones, %d words, %d disambiguation symbols",
        lang_dir,
        summary.num_phones,
        summary.num_words,
        summary.num_disambig,
    )
    return summary


def _build_lang(
    d: DictDir, lang_dir: Path, config: LangConfig, dict_dir: Path
) -> PrepareLangSummary:
    pd = config.position_dependent_phones
    phones_dir = lang_dir / "phones"
    words = sorted({w for w, _ in d.lexicon})
    if config.oov_word not in words:
        raise InputError(
            f"OOV word {config.oov_word!r} is not in the lexicon", dict_dir / "lexicon.txt"
        )
    phone_map = _phone_map(d, pd)
    lexicon = [(w, add_word_positions(p) if pd else p) for w, p in d.lexicon]
    lexicon_disambig, max_disambig = add_disambig_symbols(lexicon)
    ndisambig = max_disambig + 1  # one more for silence in L_disambig
    disambig = [f"#{k}" for k in range(ndisambig + 1)]

    silence = _expand(phone_map, (p for line in d.silence_phones for p in line))
    nonsilence = _expand(phone_map, (p for line in d.nonsilence_phones for p in line))
    phone_ids = write_symbol_table(
        lang_dir / "phones.txt", ["<eps>", *silence, *nonsilence, *disambig]
    )
    word_ids = write_symbol_table(lang_dir / "words.txt", ["<eps>", *words, "#0", "<s>", "</s>"])

    lists = {
        "silence": silence,
        "nonsilence": nonsilence,
        "optional_silence": [d.optional_silence],
        "disambig": disambig,
        "context_indep": silence,
    }
    for name, phones in lists.items():
        _write_phone_list(phones_dir, name, phones, phone_ids)
    sets = [_expand(phone_map, line) for line in d.silence_phones + d.nonsilence_phones]
    _write_phone_sets(phones_dir, "sets", sets, phone_ids)
    questions = [_expand(phone_map, q) for q in d.extra_questions]
    if pd:
        base_nonsil = [p for line in d.nonsilence_phones for p in line]
        base_sil = [p for line in d.silence_phones for p in line]
        questions += [[p + s for p in base_nonsil] for s in POSITION_SUFFIXES]
        questions += [[p + s for p in base_sil] for s in ("", *POSITION_SUFFIXES)]
    _write_phone_sets(phones_dir, "extra_questions", questions, phone_ids)
    _write_lines(phones_dir / "roots.txt", ("shared split " + " ".join(s) for s in sets))
    _write_lines(
        phones_dir / "roots.int",
        ("shared split " + " ".join(str(phone_ids[p]) for p in s) for s in sets),
    )
    if pd:
        boundary = [(p, BOUNDARY_OF_SUFFIX.get(p[-2:], "nonword")) for p in silence]
        boundary += [(p, BOUNDARY_OF_SUFFIX[p[-2:]]) for p in nonsilence]
        _write_lines(phones_dir / "word_boundary.txt", (f"{p} {b}" for p, b in boundary))
        _write_lines(phones_dir / "word_boundary.int", (f"{phone_ids[p]} {b}" for p, b in boundary))
    align = sorted(
        {f"{w} {w} {' '.join(p)}" for w, p in lexicon} | {f"<eps> <eps> {d.optional_silence}"}
    )
    _write_lines(phones_dir / "align_lexicon.txt", align)
    _write_lines(
        phones_dir / "align_lexicon.int",
        (
            " ".join(
                [str(word_ids[f[0]]), str(word_ids[f[1]]), *(str(phone_ids[p]) for p in f[2:])]
            )
            for f in (line.split() for line in align)
        ),
    )
    _write_lines(phones_dir / "wdisambig.txt", ["#0"])
    _write_lines(phones_dir / "wdisambig_phones.int", [str(phone_ids["#0"])])
    _write_lines(phones_dir / "wdisambig_words.int", [str(word_ids["#0"])])
    _write_lines(lang_dir / "oov.txt", [config.oov_word])
    _write_lines(lang_dir / "oov.int", [str(word_ids[config.oov_word])])

    with atomic_open(lang_dir / "topo") as f:
        f.write(
            make_topo(
                [phone_ids[p] for p in nonsilence],
                [phone_ids[p] for p in silence],
                num_nonsil_states=config.num_nonsil_states,
                num_sil_states=config.num_sil_states,
            )
        )

    sil = phone_ids[d.optional_silence]
    lex_int = [(word_ids[w], [phone_ids[p] for p in pron]) for w, pron in lexicon]
    fst = finish_lexicon_fst(make_lexicon_fst(lex_int, sil_prob=config.sil_prob, sil_phone=sil))
    with atomic_path(lang_dir / "L.fst") as tmp:
        fst.write(str(tmp))
    lex_int = [(word_ids[w], [phone_ids[p] for p in pron]) for w, pron in lexicon_disambig]
    fst = make_lexicon_fst(
        lex_int,
        sil_prob=config.sil_prob,
        sil_phone=sil,
        sil_disambig=phone_ids[f"#{ndisambig}"],
        self_loop=(phone_ids["#0"], word_ids["#0"]),
    )
    finish_lexicon_fst(fst)
    with atomic_path(lang_dir / "L_disambig.fst") as tmp:
        fst.write(str(tmp))
    if max_disambig:
        log.info(
            "%d pronunciations needed disambiguation symbols (up to #%d)",
            sum(1 for _, p in lexicon_disambig if p[-1].startswith("#")),
            max_disambig,
        )
    return PrepareLangSummary(lang_dir, len(silence) + len(nonsilence), len(words), len(disambig))
