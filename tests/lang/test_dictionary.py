"""prepare-dict: CMUdict, lexicon files, OOV handling, sentencepiece units."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from asr_distill.cli import main
from asr_distill.errors import InputError
from asr_distill.lang.dictionary import (
    DictConfig,
    frequent_english_words,
    prepare_dict,
    read_dict_dir,
    read_lexicon,
    strip_stress,
)
from asr_distill.lang.lang_dir import prepare_lang, validate_lang

CMU_VOWELS = {
    "AA",
    "AE",
    "AH",
    "AO",
    "AW",
    "AY",
    "EH",
    "ER",
    "EY",
    "IH",
    "IY",
    "OW",
    "OY",
    "UH",
    "UW",
}
CMU_CONSONANTS = {"B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R"}
CMU_CONSONANTS |= {"S", "SH", "T", "TH", "V", "W", "Y", "Z", "ZH"}
CMU_39 = CMU_VOWELS | CMU_CONSONANTS


def write_text(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"spk1-u{i:03d} {line}\n" for i, line in enumerate(lines)))
    return path


def lexicon_dict(d: Path) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for line in (d / "lexicon.txt").read_text().splitlines():
        word, *pron = line.split()
        out.setdefault(word, []).append(pron)
    return out


def rows(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def test_strip_stress():
    assert strip_stress("AH0") == "AH"
    assert strip_stress("B") == "B"
    assert strip_stress("a12") == "a"
    assert strip_stress("7") == "7"


def test_cmudict_stress_stripped_with_oov(tmp_path):
    text = write_text(
        tmp_path / "text", ["HELLO WORLD", "HELLO XYZZYQ", "XYZZYQ PLUGH WORLD", "<UNK> HELLO"]
    )
    summary = prepare_dict(text, tmp_path / "dict")
    d = tmp_path / "dict"
    lex = lexicon_dict(d)
    # CMUdict is lower case, the transcripts upper case: entries use the transcript spelling.
    assert ["HH", "AH", "L", "OW"] in lex["HELLO"] and ["HH", "EH", "L", "OW"] in lex["HELLO"]
    assert lex["WORLD"] == [["W", "ER", "L", "D"]]
    assert lex["<UNK>"] == [["SPN"]]
    assert "XYZZYQ" not in lex and "PLUGH" not in lex
    assert rows(d / "oov_words.txt") == [["XYZZYQ", "2"], ["PLUGH", "1"]]
    assert summary.num_oov_types == 2 and summary.num_oov_tokens == 3
    assert summary.num_tokens == 9
    assert rows(d / "silence_phones.txt") == [["SIL"], ["SPN"]]
    assert rows(d / "optional_silence.txt") == [["SIL"]]
    nonsil = rows(d / "nonsilence_phones.txt")
    assert all(len(line) == 1 for line in nonsil)
    assert {line[0] for line in nonsil} == CMU_39
    assert rows(d / "extra_questions.txt") == [["SIL", "SPN"]]
    read_dict_dir(d)  # the result passes the dict-dir checks
    assert (d / "config.yaml").is_file() and (d / ".done").is_file()


def test_cmudict_keep_stress_groups_variants(tmp_path):
    text = write_text(tmp_path / "text", ["HELLO WORLD"])
    prepare_dict(text, tmp_path / "dict", DictConfig(keep_stress=True))
    d = tmp_path / "dict"
    assert ["HH", "AH0", "L", "OW1"] in lexicon_dict(d)["HELLO"]
    nonsil = rows(d / "nonsilence_phones.txt")
    assert ["AH0", "AH1", "AH2"] in nonsil
    assert ["B"] in nonsil
    assert {strip_stress(p) for line in nonsil for p in line} == CMU_39
    questions = rows(d / "extra_questions.txt")
    assert questions[0] == ["SIL", "SPN"]
    stressed = next(q for q in questions[1:] if "AH1" in q)
    assert "OW1" in stressed and "AH0" not in stressed and "B" not in stressed


def test_librispeech_style_lexicon_and_extra_words(tmp_path):
    lexicon = tmp_path / "librispeech-lexicon.txt"
    lexicon.write_text(
        "A\tAH0\nA\tEY1\nCAT\tK AE1 T\nDOG\tD AO1 G\nEMU\tIY1 M Y UW0\nUNUSED\tZH OY1\n"
    )
    (tmp_path / "extra.txt").write_text("EMU\nGNU\n")
    text = write_text(tmp_path / "text", ["A CAT", "A DOG", "YAK"])
    summary = prepare_dict(
        text,
        tmp_path / "dict",
        DictConfig(source="lexicon", lexicon=str(lexicon)),
        extra_word_lists=[tmp_path / "extra.txt"],
    )
    d = tmp_path / "dict"
    lex = lexicon_dict(d)
    assert lex["A"] == [["AH"], ["EY"]]
    assert lex["CAT"] == [["K", "AE", "T"]]
    assert lex["EMU"] == [["IY", "M", "Y", "UW"]]  # from the extra word list
    assert "UNUSED" not in lex and "GNU" not in lex
    assert rows(d / "oov_words.txt") == [["YAK", "1"]]  # extra-list OOVs are not listed
    assert summary.num_extra_oov_types == 1
    # The inventory is the whole source lexicon's (ZH and OY only occur in UNUSED).
    phones = {line[0] for line in rows(d / "nonsilence_phones.txt")}
    assert {"ZH", "OY", "AE", "UW"} <= phones


def test_extra_text_adds_every_word_of_plain_text_and_data_dirs(tmp_path):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("A AH\nCAT K AE T\nDOG D AO G\nEMU IY M Y UW\nGNU N UW\n")
    (tmp_path / "lm.txt").write_text("<s> A DOG </s>\n\nEMU YAK\n")
    data_dir = tmp_path / "dev"
    write_text(data_dir / "text", ["GNU"])
    summary = prepare_dict(
        write_text(tmp_path / "text", ["A CAT"]),
        tmp_path / "dict",
        DictConfig(source="lexicon", lexicon=str(lexicon)),
        extra_texts=[tmp_path / "lm.txt", data_dir],
    )
    lex = lexicon_dict(tmp_path / "dict")
    assert set(lex) == {"A", "CAT", "DOG", "EMU", "GNU", "<UNK>"}  # ids are not words
    assert summary.num_extra_oov_types == 1  # YAK
    (tmp_path / "bad.txt").write_text("A CAT\nA #0 DOG\n")
    with pytest.raises(InputError, match=r"bad\.txt:2"):
        prepare_dict(
            tmp_path / "text",
            tmp_path / "dict2",
            DictConfig(source="lexicon", lexicon=str(lexicon)),
            extra_texts=[tmp_path / "bad.txt"],
        )


def test_frequent_english_words_are_plain_upper_case_words_in_rank_order():
    words = frequent_english_words(300)
    assert words[:3] == ["THE", "TO", "AND"]
    assert 250 < len(words) <= 300  # numbers and symbols of the list are left out
    assert all(w.replace("'", "").isalpha() and w.isupper() for w in words)
    assert "DON'T" in words
    assert frequent_english_words(50) == words[: len(frequent_english_words(50))]


def test_frequent_words_join_the_vocabulary_where_the_source_has_them(tmp_path):
    lexicon = tmp_path / "lexicon.txt"
    # ZYZZYVA is in the source but not frequent; WHO is frequent but not in the source.
    lexicon.write_text("A AH\nCAT K AE T\nTHE DH AH\nOF AH V\nAND AE N D\nZYZZYVA Z IH Z\n")
    text = write_text(tmp_path / "text", ["A CAT"])
    summary = prepare_dict(
        text,
        tmp_path / "dict",
        DictConfig(source="lexicon", lexicon=str(lexicon), frequent_words=100),
    )
    assert set(lexicon_dict(tmp_path / "dict")) == {"A", "CAT", "THE", "OF", "AND", "<UNK>"}
    assert summary.num_extra_oov_types == 0  # frequent words without one are not "extra"
    # 0 (the default) adds none
    prepare_dict(text, tmp_path / "dict0", DictConfig(source="lexicon", lexicon=str(lexicon)))
    assert set(lexicon_dict(tmp_path / "dict0")) == {"A", "CAT", "<UNK>"}
    # A finished dict asked for again with another number is refused, not reused.
    with pytest.raises(InputError, match=r"dict0.*other settings \(frequent_words: 0 -> 100"):
        prepare_dict(
            text, tmp_path / "dict0", DictConfig(source="lexicon", lexicon=str(lexicon),
                                                 frequent_words=100)
        )  # fmt: skip
    with pytest.raises(InputError, match="frequent_words must be >= 0"):
        DictConfig(frequent_words=-1)


def test_frequent_words_without_wordfreq_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wordfreq", None)  # import fails
    with pytest.raises(InputError, match="needs the wordfreq package"):
        prepare_dict(
            write_text(tmp_path / "text", ["A CAT"]),
            tmp_path / "dict",
            DictConfig(frequent_words=10),
        )
    assert not (tmp_path / "dict" / ".done").exists()


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("CAT K AE T\nDOG\n", 2, "no pronunciation"),
        ("CAT 1.0 K AE T\n", 1, "probabilities"),
        ("CAT K AE T\n#1 K\n", 2, "cannot be a word"),
    ],
)
def test_bad_lexicon_names_file_and_line(tmp_path, content, line, message):
    lexicon = tmp_path / "lex.txt"
    lexicon.write_text(content)
    with pytest.raises(InputError, match=message) as e:
        read_lexicon(lexicon)
    assert e.value.path == str(lexicon) and e.value.line == line
    text = write_text(tmp_path / "text", ["CAT"])
    rc = main(["prepare-dict", str(text), str(tmp_path / "d"), "--source", "lexicon",
               "--lexicon", str(lexicon)])  # fmt: skip
    assert rc == 1
    assert not (tmp_path / "d" / ".done").exists()


def test_sentencepiece_units_spell_words_and_lang_validates(tmp_path):
    lines = [
        "THE CAT SAT ON THE MAT",
        "THE DOG SAT ON THE LOG",
        "A CAT AND A DOG MET ON A MAT",
        "CATS AND DOGS",
    ] * 3
    data = tmp_path / "data"
    write_text(data / "text", lines)
    rc = main(["prepare-dict", str(data), str(tmp_path / "dict"), "--source", "sentencepiece",
               "--sp-vocab-size", "30", "--sp-model-type", "bpe"])  # fmt: skip
    assert rc == 0
    d = tmp_path / "dict"
    lex = lexicon_dict(d)
    vocab = {w for line in lines for w in line.split()}
    assert set(lex) == vocab | {"<UNK>"}
    pieces = {line[0] for line in rows(d / "nonsilence_phones.txt")}
    for word in vocab:
        (pron,) = lex[word]
        assert "".join(pron) == "▁" + word  # the pieces spell the word
        assert pron[0].startswith("▁")
        assert set(pron) <= pieces
    assert (d / "units.model").stat().st_size > 0
    assert rows(d / "oov_words.txt") == []
    prepare_lang(d, tmp_path / "lang")
    lang = validate_lang(tmp_path / "lang")
    assert all(p + "_B" in lang.phones for p in pieces)


def test_rerun_is_noop_unless_force(tmp_path):
    text = write_text(tmp_path / "text", ["HELLO"])
    assert prepare_dict(text, tmp_path / "dict") is not None
    (tmp_path / "dict" / "lexicon.txt").write_text("changed\n")
    assert prepare_dict(text, tmp_path / "dict") is None
    assert (tmp_path / "dict" / "lexicon.txt").read_text() == "changed\n"
    assert prepare_dict(text, tmp_path / "dict", force=True) is not None
    assert "HELLO" in lexicon_dict(tmp_path / "dict")
