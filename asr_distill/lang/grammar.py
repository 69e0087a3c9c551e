"""``make-g``: an ARPA n-gram LM as the grammar FST ``G.fst`` of a lang dir (with kaldilm).

``kaldilm.arpa2fst`` does what Kaldi's ``arpa2fst --disambig-symbol=#0
--read-symbol-table=words.txt`` does: one state per n-gram history, word arcs carry
``-ln p(w | h)``, backoff arcs carry ``#0`` on the input side and epsilon on the output
side with the backoff weight, ``p(</s> | h)`` is the final weight of ``h``'s state and
``<s>``/``</s>`` never appear as labels (the start state is the ``<s>`` history). G is
sorted on input labels.

Input ARPA: plain or gzip-compressed (``.gz``; kaldilm reads plain text only, so it is
decompressed to a temporary file). If the ARPA's unknown-word symbol
(:attr:`GrammarConfig.arpa_unk`, ``<unk>`` as ``train-lm`` writes it) is not in
words.txt it is renamed to the lang dir's OOV word (``<UNK>``). Other ARPA words that
are not in words.txt cannot be mapped (merging their n-grams into the OOV word's would
need renormalisation): they are reported and their n-grams are skipped, as Kaldi's
arpa2fst does, or rejected with ``on_oov="error"``.

Where G goes: with ``out_dir`` the lang dir is copied there and G.fst added (like
Kaldi's ``format_lm.sh`` making ``data/lang_test``), so one lang dir can serve several
LMs; without it G.fst is written into the lang dir itself. The target dir gets
``G.fst``, ``config_make_g.yaml``, ``log/make-g.log`` and a ``.done_G`` marker (a copy
also gets ``.done``).

Check: G must have a successful path, all its input labels must be outputs of
L_disambig (words with pronunciations, or ``#0``), and L_disambig composed with G's
best path is non-empty; when G has at most :attr:`GrammarConfig.full_compose_max_arcs`
arcs the whole L_disambig∘G is built and must be non-empty too.

kaldilm runs in a child process: importing kaldilm before kaldifst or kaldi_hmm_gmm in
one process hangs (kaldilm 1.15 with kaldifst 1.7.17), and kaldilm aborts the process
on a malformed ARPA; a child turns both into an ordinary error.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import kaldifst

from asr_distill.errors import InputError
from asr_distill.io import atomic_path, mark_done
from asr_distill.io.step import step_log
from asr_distill.lang.validate import LangDir, fst_labels, validate_lang

log = logging.getLogger(__name__)

G_NAME = "G.fst"
G_DONE = ".done_G"
MAKE_G_CONFIG = "config_make_g.yaml"
OOV_POLICIES = ("skip", "error")
_ARPA2FST = (
    "import sys, kaldilm; kaldilm.arpa2fst(sys.argv[1], sys.argv[2], bos_symbol='<s>', "
    "eos_symbol='</s>', disambig_symbol='#0', read_symbol_table=sys.argv[3], "
    "max_arpa_warnings=int(sys.argv[4]), max_order=int(sys.argv[5]))"
)


@dataclasses.dataclass
class GrammarConfig:
    """Options of :func:`make_g` (defaults in brackets).

    arpa_unk: the ARPA's unknown-word symbol, renamed to the lang's OOV word when words.txt
        lacks it [<unk>].
    on_oov: other ARPA words missing from words.txt: ``skip`` their n-grams (with a
        warning) or raise an ``error`` [skip].
    full_compose_max_arcs: build the whole L_disambig∘G as the check when G has at
        most this many arcs (bigger LMs: compose with G's best path only; 0: never)
        [2000000].
    max_order: use n-grams up to this order; -1 for all [-1].
    """

    arpa_unk: str = "<unk>"
    on_oov: str = "skip"
    full_compose_max_arcs: int = 2_000_000
    max_order: int = -1

    def __post_init__(self) -> None:
        if self.on_oov not in OOV_POLICIES:
            raise InputError(f"on_oov must be one of {OOV_POLICIES}, got {self.on_oov!r}")
        if self.full_compose_max_arcs < 0:
            raise InputError("full_compose_max_arcs must be >= 0")
        if self.max_order == 0 or self.max_order < -1:
            raise InputError(f"max_order must be -1 or >= 1, got {self.max_order}")


@dataclasses.dataclass
class MakeGSummary:
    """Result of :func:`make_g` (None for a no-op re-run)."""

    g_path: Path
    num_states: int
    num_arcs: int
    oov_words: list[str]
    lg_states: int | None


@dataclasses.dataclass
class _ArpaInfo:
    vocab: set[str]
    ngram_counts: dict[int, int]


def _open_text(path: Path):
    try:
        if path.suffix == ".gz":
            return gzip.open(path, "rt", encoding="utf-8")
        return open(path, encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path) from None


def copy_arpa(src: str | Path, dst: Path, rename: dict[str, str]) -> _ArpaInfo:
    """Copy an ARPA file (``.gz`` decompressed) to ``dst``, renaming the words in
    ``rename`` in n-gram lines; check its sections and collect its unigram words (as
    spelled in ``src``, before renaming)."""
    src = Path(src)
    info = _ArpaInfo(set(), {})
    section: str | int | None = None
    lineno = 0
    try:
        with _open_text(src) as fin, open(dst, "w", encoding="utf-8") as fout:
            for lineno, line in enumerate(fin, start=1):
                stripped = line.strip()
                if stripped == "\\data\\":
                    section = "data"
                elif stripped == "\\end\\":
                    section = "end"
                elif stripped.startswith("\\") and stripped.endswith("-grams:"):
                    try:
                        section = int(stripped[1:].split("-")[0])
                    except ValueError:
                        raise InputError(f"bad section header {stripped!r}", src, lineno) from None
                    if section not in info.ngram_counts:
                        raise InputError(f"{stripped} not announced in \\data\\", src, lineno)
                elif section == "data" and stripped.startswith("ngram "):
                    try:
                        order, count = stripped[6:].split("=")
                        info.ngram_counts[int(order)] = int(count)
                    except ValueError:
                        raise InputError(f"bad line {stripped!r}", src, lineno) from None
                elif isinstance(section, int) and stripped:
                    fields = stripped.split()
                    if len(fields) < section + 1:
                        raise InputError(f"expected a {section}-gram line", src, lineno)
                    ngram = fields[1 : section + 1]
                    if section == 1:
                        info.vocab.add(ngram[0])
                    if any(w in rename for w in ngram):
                        ngram = [rename.get(w, w) for w in ngram]
                        line = " ".join([fields[0], *ngram, *fields[section + 1 :]]) + "\n"
                fout.write(line)
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise InputError(f"cannot read ARPA text: {e}", src, lineno or None) from None
    if not info.ngram_counts or 1 not in info.ngram_counts:
        raise InputError("no \\data\\ section with 'ngram 1=N' (not an ARPA file?)", src)
    if section != "end":
        raise InputError("no \\end\\ line (truncated ARPA file?)", src)
    return info


def arpa_to_fst(
    arpa: Path, words_txt: Path, out: Path, max_order: int = -1, *, source: Path | None = None
) -> None:
    """Run ``kaldilm.arpa2fst`` in a child process: ``arpa`` -> binary G at ``out``.

    Errors name ``source`` (the user's file that ``arpa`` was copied from), if given.
    """
    cmd = [
        sys.executable,
        "-c",
        _ARPA2FST,
        str(arpa),
        str(out),
        str(words_txt),
        "30",
        str(max_order),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in proc.stderr.splitlines():
        if line.startswith("[W]") or line.startswith("[E]"):
            log.debug("kaldilm: %s", line)
    if proc.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
        errors = [x for x in proc.stderr.splitlines() if x.startswith("[E]")]
        detail = "; ".join(errors) or proc.stderr.strip()[-500:]
        raise InputError(
            f"kaldilm arpa2fst failed (exit {proc.returncode}): {detail}", source or arpa
        )


def sentence_cost(g: kaldifst.StdVectorFst, word_ids: Sequence[int], backoff_id: int) -> float:
    """``-ln P(</s>, w_1..w_n | <s>)`` under G, read the way the ARPA backoff rule reads it.

    From the start state, each word takes the word's arc when the state has one, else the
    backoff (``backoff_id``) arc and tries again; ``</s>`` is the final weight, reached the
    same way. This is the exact n-gram probability even where a backoff path through G
    would be cheaper. Raises ValueError if G cannot produce the sentence.
    """
    state, cost = g.start, 0.0

    def back_off(s: int, what: str) -> tuple[int, float]:
        for a in kaldifst.ArcIterator(g, s):
            if a.ilabel == backoff_id:
                return a.nextstate, a.weight.value
        raise ValueError(f"G cannot produce {what} (no arc and no backoff)")

    for w in word_ids:
        while True:
            arc = next((a for a in kaldifst.ArcIterator(g, state) if a.ilabel == w), None)
            if arc is not None:
                state, cost = arc.nextstate, cost + arc.weight.value
                break
            state, bow = back_off(state, f"word id {w}")
            cost += bow
    while math.isinf(g.final(state).value):
        state, bow = back_off(state, "</s>")
        cost += bow
    return cost + g.final(state).value


def check_lg(
    l_disambig: kaldifst.StdVectorFst, g: kaldifst.StdVectorFst, lang: LangDir, *, full: bool
) -> int | None:
    """Check that L_disambig∘G is non-empty (see the module docstring).

    Returns the number of states of the full composition when ``full``, else None.
    Raises :class:`InputError` naming G.fst.
    """
    where = lang.path / G_NAME
    if not l_disambig.is_olabel_sorted:  # compose() matches on the left FST's outputs
        l_disambig = l_disambig.copy()
        kaldifst.arcsort(l_disambig, sort_type="olabel")
    best = kaldifst.shortest_path(g)
    if best.num_states == 0:
        raise InputError("G has no successful path", where)
    l_out = fst_labels(l_disambig)[1]
    g_in = fst_labels(g)[0]
    missing = g_in - l_out - {0}
    if missing:
        names = {i: w for w, i in lang.words.items()}
        example = [names.get(i, i) for i in sorted(missing)[:5]]
        raise InputError(f"G uses words without pronunciations in L: {example}", where)
    kaldifst.arcsort(best, sort_type="ilabel")
    if kaldifst.compose(l_disambig, best).num_states == 0:
        raise InputError("L_disambig composed with G's best path is empty", where)
    if not full:
        return None
    lg = kaldifst.compose(l_disambig, g)
    if lg.num_states == 0:
        raise InputError("L_disambig∘G is empty", where)
    return lg.num_states


def _copy_lang(lang_dir: Path, out_dir: Path) -> None:
    ignore = shutil.ignore_patterns(".done*", "log", G_NAME, MAKE_G_CONFIG, ".*.tmp")
    shutil.copytree(lang_dir, out_dir, ignore=ignore, dirs_exist_ok=True)


def make_g(
    arpa_path: str | Path,
    lang_dir: str | Path,
    out_dir: str | Path | None = None,
    config: GrammarConfig | None = None,
    *,
    force: bool = False,
) -> MakeGSummary | None:
    """Write ``G.fst`` for the ARPA LM into ``out_dir`` (a copy of ``lang_dir``) or, with
    ``out_dir=None``, into ``lang_dir``; then check L_disambig∘G (module docstring).

    A target holding a ``.done_G`` marker is left alone (returns None) unless ``force``.
    """
    config = config or GrammarConfig()
    lang_dir = Path(lang_dir)
    in_place = out_dir is None or Path(out_dir).resolve() == lang_dir.resolve()
    target = lang_dir if in_place else Path(out_dir)
    # The lang dir's own config.yaml is prepare-lang's: make-g's settings get their own
    # file; the size of the check does not change G.
    with step_log(target, "make-g.log", force=force, marker=G_DONE,
                  clear=() if in_place else (".done",), config=config,
                  config_file=MAKE_G_CONFIG, ignore=("full_compose_max_arcs",)) as run:  # fmt: skip
        if not run:
            return None
        lang = validate_lang(lang_dir)
        if not in_place:
            _copy_lang(lang_dir, target)
            lang = dataclasses.replace(lang, path=target)
        log.info("make-g: %s + %s -> %s (%s)", arpa_path, lang_dir, target / G_NAME, config)
        rename = {}
        if config.arpa_unk not in lang.words and config.arpa_unk != lang.oov_word:
            rename[config.arpa_unk] = lang.oov_word
        with tempfile.TemporaryDirectory(prefix="make-g.") as tmp:
            arpa = Path(tmp) / "lm.arpa"
            info = copy_arpa(arpa_path, arpa, rename)
            if rename and config.arpa_unk in info.vocab and lang.oov_word in info.vocab:
                raise InputError(
                    f"the ARPA has both {config.arpa_unk} and {lang.oov_word}; cannot rename",
                    arpa_path,
                )
            vocab = {rename.get(w, w) for w in info.vocab}
            oov = sorted(vocab - set(lang.words) - {"<s>", "</s>"})
            if oov and config.on_oov == "error":
                raise InputError(
                    f"{len(oov)} ARPA words not in words.txt, e.g. {oov[:10]}", arpa_path
                )
            if oov:
                log.warning(
                    "%d ARPA words are not in words.txt; their n-grams are skipped, e.g. %s",
                    len(oov),
                    oov[:10],
                )
            log.info("ARPA n-gram counts: %s", info.ngram_counts)
            with atomic_path(target / G_NAME) as g_tmp:
                arpa_to_fst(
                    arpa, target / "words.txt", g_tmp, config.max_order, source=Path(arpa_path)
                )
                g = kaldifst.StdVectorFst.read(str(g_tmp))
                if g is None:
                    raise InputError("kaldilm wrote an unreadable G", arpa_path)
                kaldifst.arcsort(g, sort_type="ilabel")
                num_arcs = sum(g.num_arcs(s) for s in range(g.num_states))
                l_disambig = kaldifst.StdVectorFst.read(str(target / "L_disambig.fst"))
                full = num_arcs <= config.full_compose_max_arcs
                lg_states = check_lg(l_disambig, g, lang, full=full)
                g.write(str(g_tmp))
        log.info(
            "%s: %d states, %d arcs%s",
            target / G_NAME,
            g.num_states,
            num_arcs,
            "" if lg_states is None else f"; L_disambig∘G has {lg_states} states",
        )
        if not in_place:  # a lang dir of its own: complete once G is (marked on exit)
            mark_done(target)
    return MakeGSummary(target / G_NAME, g.num_states, num_arcs, oov, lg_states)
