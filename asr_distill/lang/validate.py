"""``validate-lang``: check a Kaldi lang directory (like Kaldi's ``utils/validate_lang.pl``).

Also the readers of its symbol tables and HMM topology, used by the steps that consume
a lang dir.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import kaldi_hmm_gmm
import kaldifst

from asr_distill.errors import InputError
from asr_distill.io.text import utf8_lines

PHONE_LISTS = ("silence", "nonsilence", "optional_silence", "disambig", "context_indep")
BOUNDARY_OF_SUFFIX = {"_B": "begin", "_E": "end", "_I": "internal", "_S": "singleton"}


def read_symbol_table(path: str | Path) -> dict[str, int]:
    """Read a Kaldi/OpenFst symbol table and check it: ``<eps> 0`` first, ids contiguous
    from 0 in file order, symbols unique. Raises :class:`InputError` naming the line."""
    path = Path(path)
    table: dict[str, int] = {}
    for lineno, line in utf8_lines(path):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise InputError("expected 'symbol integer-id'", path, lineno)
        symbol, i = fields[0], int(fields[1])
        if i != lineno - 1:
            raise InputError(f"ids must be 0, 1, 2, ... in order; got {i}", path, lineno)
        if symbol in table:
            raise InputError(f"duplicate symbol {symbol!r}", path, lineno)
        table[symbol] = i
    if not table or next(iter(table)) != "<eps>":
        raise InputError("the first symbol must be '<eps> 0'", path, 1)
    return table


def read_topo(path: str | Path):
    """Parse a ``topo`` file with ``kaldi_hmm_gmm.HmmTopology`` (raises InputError)."""
    path = Path(path)
    topo = kaldi_hmm_gmm.HmmTopology()
    try:
        topo.read(path.read_text(encoding="utf-8"))
        topo.check()
    except (OSError, UnicodeDecodeError, RuntimeError) as e:
        raise InputError(f"cannot parse HMM topology: {e}", path) from None
    return topo


@dataclasses.dataclass
class LangDir:
    """The symbol side of a checked lang dir (returned by :func:`validate_lang`)."""

    path: Path
    phones: dict[str, int]
    words: dict[str, int]
    silence: list[str]
    nonsilence: list[str]
    optional_silence: str
    disambig: list[str]
    oov_word: str
    word_boundary: dict[str, str] | None

    @property
    def position_dependent(self) -> bool:
        return self.word_boundary is not None

    @property
    def oov_id(self) -> int:
        return self.words[self.oov_word]


def _read_rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise InputError("missing", path)
    return [line.split() for _, line in utf8_lines(path)]


def _check_int_file(
    txt: Path, table: dict[str, int], *, symbol_fields: slice = slice(None), tables=None
) -> list[list[str]]:
    """Rows of ``txt``, after checking its symbols are in ``table`` and that ``txt``'s
    ``.int`` twin holds the same rows with symbols replaced by their ids."""
    rows = _read_rows(txt)
    ints = _read_rows(txt.with_suffix(".int"))
    if len(ints) != len(rows):
        raise InputError(
            f"{len(ints)} lines, but {txt.name} has {len(rows)}", txt.with_suffix(".int")
        )
    for lineno, (row, irow) in enumerate(zip(rows, ints, strict=True), start=1):
        expected = list(row)
        for i in range(len(row))[symbol_fields]:
            t = table if tables is None else tables[min(i, len(tables) - 1)]
            if row[i] not in t:
                raise InputError(f"unknown symbol {row[i]!r}", txt, lineno)
            expected[i] = str(t[row[i]])
        if irow != expected:
            raise InputError(f"does not match {txt.name}", txt.with_suffix(".int"), lineno)
    return rows


def read_fst(path: Path) -> kaldifst.StdVectorFst:
    """An OpenFst StdVectorFst file (L.fst, G.fst, HCLG.fst); InputError if missing or
    unreadable."""
    if not path.is_file():
        raise InputError("missing", path)
    fst = kaldifst.StdVectorFst.read(str(path))
    if fst is None:
        raise InputError("not a readable OpenFst (StdVectorFst) file", path)
    return fst


def fst_labels(fst: kaldifst.StdVectorFst) -> tuple[set[int], set[int], set[tuple[int, int]]]:
    """(input labels, output labels, label pairs of non-epsilon self-loops) of ``fst``."""
    ilabels: set[str] = set()
    olabels: set[str] = set()
    loops: set[tuple[str, str]] = set()
    for line in fst.to_str().splitlines():  # printing in C++ beats a Python arc loop
        f = line.split()
        if len(f) >= 4:
            ilabels.add(f[2])
            olabels.add(f[3])
            if f[0] == f[1] and f[2] != "0":
                loops.add((f[2], f[3]))
    return (
        {int(x) for x in ilabels},
        {int(x) for x in olabels},
        {(int(a), int(b)) for a, b in loops},
    )


def validate_lang(lang_dir: str | Path) -> LangDir:
    """Check a lang dir like Kaldi's ``utils/validate_lang.pl``; return its symbols.

    Checks: phones.txt/words.txt contiguous from ``<eps> 0`` with unique symbols;
    words.txt has ``#0 <s> </s>``; every phone is in exactly one of silence/nonsilence
    (or is a disambiguation symbol, all listed in disambig.txt, ``#0`` first); the
    ``.int`` files agree with the ``.txt`` files; sets/roots cover each phone once;
    word_boundary (present for position-dependent phones) covers every non-disambig
    phone; oov.txt/oov.int; ``topo`` parses with kaldi_hmm_gmm and covers exactly the
    non-disambig phones; L.fst/L_disambig.fst (and G.fst if present) read, use only
    known labels, L.fst has no disambiguation symbols and L_disambig has the
    ``#0:#0`` loop. Raises :class:`InputError` naming the file of the first problem.
    """
    lang_dir = Path(lang_dir)
    phones_dir = lang_dir / "phones"
    phones = read_symbol_table(lang_dir / "phones.txt")
    words = read_symbol_table(lang_dir / "words.txt")
    for w in ("#0", "<s>", "</s>"):
        if w not in words:
            raise InputError(f"no {w!r}", lang_dir / "words.txt")
    lists = {}
    for name in PHONE_LISTS:
        rows = _check_int_file(phones_dir / f"{name}.txt", phones)
        for lineno, row in enumerate(rows, start=1):
            if len(row) != 1:
                raise InputError("expected one phone a line", phones_dir / f"{name}.txt", lineno)
        lists[name] = [r[0] for r in rows]
        csl = phones_dir / f"{name}.csl"
        if csl.is_file():
            expected = ":".join(str(phones[p]) for p in lists[name])
            if csl.read_text(encoding="utf-8").strip() != expected:
                raise InputError(f"does not match {name}.txt", csl)
    silence, nonsilence, disambig = lists["silence"], lists["nonsilence"], lists["disambig"]
    both = set(silence) & set(nonsilence)
    if both:
        raise InputError(f"phones both silence and nonsilence: {sorted(both)[:5]}", phones_dir)
    real = [p for p in phones if p != "<eps>" and p not in set(disambig)]
    missing = set(real) - set(silence) - set(nonsilence)
    if missing:
        raise InputError(
            f"phones in neither silence.txt nor nonsilence.txt: {sorted(missing)[:5]}", phones_dir
        )
    unlisted = {p for p in phones if p.startswith("#")} - set(disambig)
    if unlisted or not disambig or disambig[0] != "#0":
        raise InputError(
            "disambig.txt must list #0 and every #N of phones.txt", phones_dir / "disambig.txt"
        )
    if len(lists["optional_silence"]) != 1 or lists["optional_silence"][0] not in silence:
        raise InputError("expected one silence phone", phones_dir / "optional_silence.txt")
    if not set(lists["context_indep"]) <= set(real):
        raise InputError("lists a disambiguation symbol", phones_dir / "context_indep.txt")

    real_set = set(real)

    def covers_once(name: str, rows: list[list[str]], skip: int = 0) -> None:
        seen: set[str] = set()
        for lineno, row in enumerate(rows, start=1):
            for p in row[skip:]:
                if p in seen or p not in real_set:
                    raise InputError(
                        f"phone {p!r} repeated or not a real phone", phones_dir / name, lineno
                    )
                seen.add(p)
        if seen != set(real):
            raise InputError(f"misses phones {sorted(set(real) - seen)[:5]}", phones_dir / name)

    covers_once("sets.txt", _check_int_file(phones_dir / "sets.txt", phones))
    roots = _check_int_file(phones_dir / "roots.txt", phones, symbol_fields=slice(2, None))
    for lineno, row in enumerate(roots, start=1):
        if (
            len(row) < 3
            or row[0] not in ("shared", "not-shared")
            or row[1] not in ("split", "not-split")
        ):
            raise InputError(
                "expected '(not-)shared (not-)split PHONE ...'", phones_dir / "roots.txt", lineno
            )
    covers_once("roots.txt", roots, skip=2)
    for lineno, row in enumerate(
        _check_int_file(phones_dir / "extra_questions.txt", phones), start=1
    ):
        if not set(row) <= set(real):
            raise InputError(
                "lists a disambiguation symbol", phones_dir / "extra_questions.txt", lineno
            )

    boundary = None
    if (phones_dir / "word_boundary.txt").is_file():
        rows = _check_int_file(phones_dir / "word_boundary.txt", phones, symbol_fields=slice(0, 1))
        boundary = {}
        for lineno, row in enumerate(rows, start=1):
            kinds = ("nonword", *BOUNDARY_OF_SUFFIX.values())
            if len(row) != 2 or row[1] not in kinds or row[0] in boundary:
                raise InputError(
                    "expected 'PHONE nonword|begin|end|internal|singleton' once per phone",
                    phones_dir / "word_boundary.txt",
                    lineno,
                )
            boundary[row[0]] = row[1]
        if set(boundary) != set(real):
            raise InputError(
                f"does not cover phones {sorted(set(real) - set(boundary))[:5]}",
                phones_dir / "word_boundary.txt",
            )
    elif nonsilence and all(p[-2:] in BOUNDARY_OF_SUFFIX for p in nonsilence):
        raise InputError("position-dependent phones but no phones/word_boundary.txt", phones_dir)

    oov = _read_rows(lang_dir / "oov.txt")
    if len(oov) != 1 or len(oov[0]) != 1 or oov[0][0] not in words:
        raise InputError("expected one word of words.txt", lang_dir / "oov.txt")
    if _read_rows(lang_dir / "oov.int") != [[str(words[oov[0][0]])]]:
        raise InputError("does not match oov.txt", lang_dir / "oov.int")

    topo = read_topo(lang_dir / "topo")
    if sorted(topo.phones) != sorted(phones[p] for p in real):
        raise InputError(
            "does not cover exactly the (non-disambiguation) phones of phones.txt",
            lang_dir / "topo",
        )

    disambig_ids = {phones[p] for p in disambig}
    word_ids = set(words.values())
    for name in ("L.fst", "L_disambig.fst"):
        path = lang_dir / name
        fst = read_fst(path)
        if fst.num_states == 0:
            raise InputError("empty FST", path)
        ilabels, olabels, loops = fst_labels(fst)
        if not ilabels <= set(phones.values()) or not olabels <= word_ids:
            raise InputError("labels outside phones.txt/words.txt", path)
        if name == "L.fst" and (ilabels & disambig_ids or words["#0"] in olabels):
            raise InputError("L.fst has disambiguation symbols", path)
        if name == "L_disambig.fst" and (phones["#0"], words["#0"]) not in loops:
            raise InputError("no #0:#0 self-loop (G's backoff symbol cannot pass)", path)
    if (lang_dir / "G.fst").is_file():
        fst = read_fst(lang_dir / "G.fst")
        ilabels, olabels, _ = fst_labels(fst)
        if not (ilabels | olabels) <= word_ids:
            raise InputError("labels outside words.txt", lang_dir / "G.fst")
        if {words["<s>"], words["</s>"]} & (ilabels | olabels):
            raise InputError("G.fst uses <s> or </s> as labels", lang_dir / "G.fst")
    return LangDir(
        path=lang_dir,
        phones=phones,
        words=words,
        silence=silence,
        nonsilence=nonsilence,
        optional_silence=lists["optional_silence"][0],
        disambig=disambig,
        oov_word=oov[0][0],
        word_boundary=boundary,
    )
