"""make-g: ARPA -> G.fst with kaldilm, composed with L_disambig."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import kaldifst
import pytest

from asr_distill.cli import main
from asr_distill.errors import InputError
from asr_distill.lang.grammar import GrammarConfig, make_g, sentence_cost
from asr_distill.lang.lang_dir import prepare_lang, read_symbol_table, validate_lang
from asr_distill.lang.lexicon_fst import best_output, linear_fst
from tests.lang.test_lang_dir import make_dict

LN10 = math.log(10.0)
LN2 = math.log(2.0)

# log10 probabilities; <unk> is train-lm's unknown-word symbol, ZEBRA is not in the lexicon.
ARPA = """\\data\\
ngram 1=7
ngram 2=5

\\1-grams:
-1.0 </s>
-99 <s> -0.5
-0.6 BAT -0.3
-0.7 TEA -0.2
-1.2 READ
-1.5 <unk>
-1.6 ZEBRA

\\2-grams:
-0.2 <s> BAT
-0.4 BAT TEA
-0.3 TEA </s>
-0.5 BAT </s>
-0.1 ZEBRA TEA

\\end\\
"""


@pytest.fixture(scope="module")
def lang(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("g")
    prepare_lang(make_dict(root / "dict"), root / "lang")
    return root / "lang"


@pytest.fixture(scope="module")
def lang_test(lang, tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("g_test")
    (root / "lm.arpa").write_text(ARPA)
    summary = make_g(root / "lm.arpa", lang, root / "lang_test")
    return root / "lang_test", summary


def ids(lang_dir: Path, words: str) -> list[int]:
    table = read_symbol_table(lang_dir / "words.txt")
    return [table[w] for w in words.split()]


def read_g(lang_dir: Path) -> kaldifst.StdVectorFst:
    g = kaldifst.StdVectorFst.read(str(lang_dir / "G.fst"))
    assert g is not None
    return g


def test_g_written_into_a_copy_and_validates(lang, lang_test):
    out, summary = lang_test
    assert (out / "G.fst").is_file() and not (lang / "G.fst").exists()
    assert (out / ".done").is_file() and (out / ".done_G").is_file()
    assert summary.oov_words == ["ZEBRA"]  # reported; its n-grams are skipped
    assert summary.lg_states > 0
    validate_lang(out)
    g = read_g(out)
    assert g.is_ilabel_sorted
    # <s>, </s> are not labels; #0 is on the input side of backoff arcs only.
    labels = {(a.ilabel, a.olabel) for s in range(g.num_states) for a in kaldifst.ArcIterator(g, s)}
    words = read_symbol_table(out / "words.txt")
    assert (words["#0"], 0) in labels
    assert not {words["<s>"], words["</s>"]} & {x for pair in labels for x in pair}


@pytest.mark.parametrize(
    ("sentence", "log10_prob"),
    [
        ("BAT TEA", -0.2 - 0.4 - 0.3),
        ("BAT READ", -0.2 + (-0.3 - 1.2) + -1.0),  # backs off twice
        ("<UNK> TEA", (-0.5 - 1.5) + -0.7 + -0.3),  # the ARPA's <unk> became <UNK>
    ],
)
def test_sentence_cost_equals_arpa_probability(lang_test, sentence, log10_prob):
    out, _ = lang_test
    g = read_g(out)
    word_ids = ids(out, sentence)
    expected = -log10_prob * LN10
    assert sentence_cost(g, word_ids, ids(out, "#0")[0]) == pytest.approx(expected, abs=1e-4)
    # The best path of G restricted to the sentence has the same weight (for these
    # sentences no backoff path beats the exact n-gram).
    # (kaldifst.compose matches on the left FST's output labels by default: sort them.)
    kaldifst.arcsort(g, sort_type="olabel")
    restricted = kaldifst.compose(g, linear_fst(word_ids))
    ok, _, olabels, weight = kaldifst.get_linear_symbol_sequence(kaldifst.shortest_path(restricted))
    assert ok and list(olabels) == word_ids
    assert weight.value == pytest.approx(expected, abs=1e-4)


def test_l_disambig_composes_with_g(lang_test):
    out, _ = lang_test
    l_disambig = kaldifst.StdVectorFst.read(str(out / "L_disambig.fst"))
    g = read_g(out)
    lg = kaldifst.compose(l_disambig, g)
    assert lg.num_states > 0
    phones = read_symbol_table(out / "phones.txt")
    words = {i: w for w, i in read_symbol_table(out / "words.txt").items()}
    seq = [phones[p] for p in ("B_B", "AE_I", "T_E", "T_B", "IY_E")]
    result = best_output(lg, seq)
    assert result is not None
    assert [words[i] for i in result[0]] == ["BAT", "TEA"]
    # L's silence choices (3 x ln 2, no silence) plus G's sentence cost.
    assert result[1] == pytest.approx(3 * LN2 + 0.9 * LN10, abs=1e-4)


def test_gzipped_arpa_in_place_and_rerun(lang, tmp_path):
    import shutil

    lang_copy = tmp_path / "lang"
    shutil.copytree(lang, lang_copy)
    with gzip.open(tmp_path / "lm.arpa.gz", "wt") as f:
        f.write(ARPA)
    argv = ["make-g", str(tmp_path / "lm.arpa.gz"), str(lang_copy), "--full-compose-max-arcs", "0"]
    assert main(argv) == 0
    g = read_g(lang_copy)
    cost = sentence_cost(g, ids(lang_copy, "BAT TEA"), ids(lang_copy, "#0")[0])
    assert cost == pytest.approx(0.9 * LN10, abs=1e-4)
    assert (lang_copy / "config_make_g.yaml").is_file()
    # Finished: a no-op, also with another size of the check (it does not change G) ...
    assert make_g(tmp_path / "lm.arpa.gz", lang_copy) is None
    # ... but asked with settings that would make another G, refused, not reused.
    with pytest.raises(InputError, match=r"lang.*other settings \(max_order: -1 -> 1\)"):
        make_g(tmp_path / "lm.arpa.gz", lang_copy, config=GrammarConfig(max_order=1))


def test_oov_policy_error_and_bad_arpa(lang, tmp_path):
    (tmp_path / "lm.arpa").write_text(ARPA)
    with pytest.raises(InputError, match="ZEBRA"):
        make_g(tmp_path / "lm.arpa", lang, tmp_path / "a", GrammarConfig(on_oov="error"))
    assert not (tmp_path / "a" / "G.fst").exists()

    both = ARPA.replace("ngram 1=7", "ngram 1=8").replace("-1.2 READ", "-1.2 READ\n-1.7 <UNK>")
    (tmp_path / "both.arpa").write_text(both)
    with pytest.raises(InputError, match="both <unk> and <UNK>"):
        make_g(tmp_path / "both.arpa", lang, tmp_path / "a")

    (tmp_path / "notarpa.txt").write_text("hello world\n")
    with pytest.raises(InputError, match="not an ARPA"):
        make_g(tmp_path / "notarpa.txt", lang, tmp_path / "b")

    # kaldilm aborts its process on this; the child process turns it into an InputError.
    (tmp_path / "badprob.arpa").write_text(ARPA.replace("-0.7 TEA", "x TEA"))
    with pytest.raises(InputError, match="kaldilm") as e:
        make_g(tmp_path / "badprob.arpa", lang, tmp_path / "c")
    assert e.value.path == str(tmp_path / "badprob.arpa")
    assert not (tmp_path / "c" / "G.fst").exists() and not (tmp_path / "c" / ".done").exists()
    assert main(["make-g", str(tmp_path / "badprob.arpa"), str(lang), str(tmp_path / "d")]) == 1
