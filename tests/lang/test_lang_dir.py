"""prepare-lang / validate-lang: symbol tables, disambiguation, topo, L.fst."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import kaldi_hmm_gmm
import kaldifst
import pytest

from asr_distill.cli import main
from asr_distill.errors import InputError
from asr_distill.lang.dictionary import DictDir, write_dict_dir
from asr_distill.lang.lang_dir import LangConfig, prepare_lang, read_symbol_table, validate_lang
from asr_distill.lang.lexicon_fst import add_disambig_symbols, best_output

LEXICON = [
    ("<UNK>", ("SPN",)),
    ("BA", ("B", "AE")),  # a prefix of BAT's pronunciation
    ("BAT", ("B", "AE", "T")),
    ("READ", ("R", "EH", "D")),  # homophones
    ("RED", ("R", "EH", "D")),
    ("TEA", ("T", "IY")),
]
LN2 = math.log(2.0)


def make_dict(path: Path, lexicon=LEXICON) -> Path:
    write_dict_dir(
        DictDir(
            lexicon=list(lexicon),
            silence_phones=[["SIL"], ["SPN"]],
            nonsilence_phones=[["AE"], ["B"], ["D"], ["EH"], ["IY"], ["R"], ["T"]],
            optional_silence="SIL",
            extra_questions=[["SIL", "SPN"]],
        ),
        path,
    )
    return path


@pytest.fixture(scope="module")
def langs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lang")
    dict_dir = make_dict(root / "dict")
    prepare_lang(dict_dir, root / "pd")
    prepare_lang(dict_dir, root / "nopd", LangConfig(position_dependent_phones=False))
    prepare_lang(dict_dir, root / "nosil", LangConfig(sil_prob=0.0))
    return {"dict": dict_dir, "pd": root / "pd", "nopd": root / "nopd", "nosil": root / "nosil"}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def read_fst(path: Path) -> kaldifst.StdVectorFst:
    fst = kaldifst.StdVectorFst.read(str(path))
    assert fst is not None
    return fst


def transduce(lang: Path, fst_name: str, phones: str) -> tuple[list[str], float] | None:
    """Words (and cost) that L maps the phone string to, or None if L rejects it."""
    ptab = read_symbol_table(lang / "phones.txt")
    wtab = {i: w for w, i in read_symbol_table(lang / "words.txt").items()}
    out = best_output(read_fst(lang / fst_name), [ptab[p] for p in phones.split()])
    return None if out is None else ([wtab[i] for i in out[0]], out[1])


def test_add_disambig_symbols_homophones_and_prefixes():
    lexicon, max_disambig = add_disambig_symbols(LEXICON)
    prons = dict(lexicon)
    assert prons["READ"] == ("R", "EH", "D", "#1")
    assert prons["RED"] == ("R", "EH", "D", "#2")
    assert prons["BA"] == ("B", "AE", "#1")  # prefix of B AE T
    assert prons["BAT"] == ("B", "AE", "T")
    assert prons["TEA"] == ("T", "IY")
    assert max_disambig == 2


def test_phones_words_and_word_boundary(langs):
    lang = langs["pd"]
    phones = lines(lang / "phones.txt")
    assert phones[:11] == [
        "<eps> 0", "SIL 1", "SIL_B 2", "SIL_E 3", "SIL_I 4", "SIL_S 5",
        "SPN 6", "SPN_B 7", "SPN_E 8", "SPN_I 9", "SPN_S 10",
    ]  # fmt: skip
    assert phones[11:15] == ["AE_B 11", "AE_E 12", "AE_I 13", "AE_S 14"]
    # Position-dependent lexicon: homophones still need #1/#2, BA no longer prefixes
    # BAT (AE_E vs AE_I): #0..#2 plus #3 for silence in L_disambig.
    assert phones[-4:] == ["#0 39", "#1 40", "#2 41", "#3 42"]
    assert "AE" not in read_symbol_table(lang / "phones.txt")
    assert lines(lang / "words.txt") == [
        "<eps> 0", "<UNK> 1", "BA 2", "BAT 3", "READ 4", "RED 5", "TEA 6",
        "#0 7", "<s> 8", "</s> 9",
    ]  # fmt: skip
    boundary = dict(line.split() for line in lines(lang / "phones" / "word_boundary.txt"))
    assert boundary["SIL"] == "nonword" and boundary["SPN_S"] == "singleton"
    assert boundary["AE_B"] == "begin" and boundary["T_E"] == "end"
    assert boundary["EH_I"] == "internal" and boundary["IY_S"] == "singleton"
    assert len(boundary) == 38  # every phone but the disambiguation symbols
    assert lines(lang / "phones" / "roots.txt")[2] == "shared split AE_B AE_E AE_I AE_S"
    assert lines(lang / "oov.txt") == ["<UNK>"] and lines(lang / "oov.int") == ["1"]
    assert lines(lang / "phones" / "disambig.csl") == ["39:40:41:42"]
    assert "READ READ R_B EH_I D_E" in lines(lang / "phones" / "align_lexicon.txt")
    lexicon_ints = lines(lang / "phones" / "align_lexicon.int")
    assert "2 2 15 12" in lexicon_ints  # BA -> B_B (15) AE_E (12)


def test_position_independent_lang(langs):
    lang = langs["nopd"]
    assert lines(lang / "phones.txt")[:4] == ["<eps> 0", "SIL 1", "SPN 2", "AE 3"]
    assert not (lang / "phones" / "word_boundary.txt").exists()
    validated = validate_lang(lang)
    assert not validated.position_dependent
    # Now B AE is a prefix of B AE T: BA gets #1 and L_disambig keeps them apart.
    assert transduce(lang, "L_disambig.fst", "B AE #1 B AE T")[0] == ["BA", "BAT"]
    assert transduce(lang, "L_disambig.fst", "B AE B AE T") is None


def test_topo_parses_with_kaldi_hmm_gmm(langs):
    lang = langs["pd"]
    topo = kaldi_hmm_gmm.HmmTopology()
    topo.read((lang / "topo").read_text())
    ptab = read_symbol_table(lang / "phones.txt")
    assert sorted(topo.phones) == list(range(1, 39))
    assert topo.num_pdf_classes(ptab["AE_B"]) == 3 and topo.min_length(ptab["AE_B"]) == 3
    assert topo.num_pdf_classes(ptab["SIL"]) == 5 and topo.num_pdf_classes(ptab["SPN_S"]) == 5
    states = topo.topology_for_phone(ptab["T_E"])
    assert len(states) == 4  # 3 emitting + final
    assert "<Transition> 0 0.75 <Transition> 1 0.25" in (lang / "topo").read_text()


def test_l_maps_phones_to_words_with_and_without_silence(langs):
    lang = langs["pd"]
    # Each word boundary (and the start) chooses silence or not: p = 0.5 -> ln 2 each.
    words, cost = transduce(lang, "L.fst", "B_B AE_I T_E T_B IY_E")
    assert words == ["BAT", "TEA"] and cost == pytest.approx(3 * LN2, abs=1e-5)
    words, cost = transduce(lang, "L.fst", "SIL B_B AE_I T_E SIL T_B IY_E SIL")
    assert words == ["BAT", "TEA"] and cost == pytest.approx(3 * LN2, abs=1e-5)
    assert transduce(lang, "L.fst", "SPN_S B_B AE_E")[0] == ["<UNK>", "BA"]
    assert transduce(lang, "L.fst", "B_B AE_I") is None  # not a whole word
    assert transduce(lang, "L.fst", "SIL SIL B_B AE_E") is None  # one optional silence only
    # Without optional silence (sil_prob 0) silence is not accepted and costs are zero.
    assert transduce(langs["nosil"], "L.fst", "SIL B_B AE_E") is None
    assert transduce(langs["nosil"], "L.fst", "B_B AE_E T_B IY_E") == (["BA", "TEA"], 0.0)


def test_l_disambig_separates_homophones(langs):
    lang = langs["pd"]
    assert transduce(lang, "L_disambig.fst", "R_B EH_I D_E #1")[0] == ["READ"]
    assert transduce(lang, "L_disambig.fst", "R_B EH_I D_E #2")[0] == ["RED"]
    assert transduce(lang, "L_disambig.fst", "R_B EH_I D_E") is None
    # silence goes through the silence disambiguation symbol #3; #0 passes as #0
    words, _ = transduce(lang, "L_disambig.fst", "SIL #3 T_B IY_E SIL #3 #0")
    assert words == ["TEA", "#0"]
    # L.fst (for training graphs) has no disambiguation symbols: both spellings accepted
    assert transduce(lang, "L.fst", "R_B EH_I D_E")[0] in (["READ"], ["RED"])
    assert read_fst(lang / "L_disambig.fst").is_olabel_sorted
    assert read_fst(lang / "L.fst").is_olabel_sorted


def test_oov_word_must_be_in_lexicon(tmp_path):
    dict_dir = make_dict(tmp_path / "dict", [e for e in LEXICON if e[0] != "<UNK>"])
    with pytest.raises(InputError, match="OOV word"):
        prepare_lang(dict_dir, tmp_path / "lang")
    assert not (tmp_path / "lang" / ".done").exists()


def _broken_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_validate_lang_catches_broken_dirs(langs, tmp_path):
    validate_lang(langs["pd"])
    assert main(["validate-lang", str(langs["pd"])]) == 0

    # A phone missing from phones.txt (renumbered so the table itself is well formed).
    lang = _broken_copy(langs["pd"], tmp_path / "missing_phone")
    kept = [p.split()[0] for p in lines(lang / "phones.txt") if not p.startswith("IY_S ")]
    (lang / "phones.txt").write_text("".join(f"{p} {i}\n" for i, p in enumerate(kept)))
    with pytest.raises(InputError, match="IY_S") as e:
        validate_lang(lang)
    assert "phones" in e.value.path
    assert main(["validate-lang", str(lang)]) == 1

    # A gap in the ids of words.txt.
    lang = _broken_copy(langs["pd"], tmp_path / "gap")
    (lang / "words.txt").write_text((lang / "words.txt").read_text().replace("BAT 3", "BAT 4"))
    with pytest.raises(InputError, match="ids must be") as e:
        validate_lang(lang)
    assert e.value.line == 4

    # A phone in neither silence.txt nor nonsilence.txt.
    lang = _broken_copy(langs["pd"], tmp_path / "unlisted")
    nonsil = [p for p in lines(lang / "phones" / "nonsilence.txt") if p != "T_S"]
    ptab = read_symbol_table(lang / "phones.txt")
    (lang / "phones" / "nonsilence.txt").write_text("".join(p + "\n" for p in nonsil))
    (lang / "phones" / "nonsilence.int").write_text("".join(f"{ptab[p]}\n" for p in nonsil))
    (lang / "phones" / "nonsilence.csl").unlink()
    with pytest.raises(InputError, match="neither"):
        validate_lang(lang)

    # A topo that misses a phone, and one that does not parse.
    lang = _broken_copy(langs["pd"], tmp_path / "topo")
    topo = (lang / "topo").read_text()
    (lang / "topo").write_text(topo.replace(" 38\n</ForPhones>", "\n</ForPhones>", 1))
    with pytest.raises(InputError, match="does not cover"):
        validate_lang(lang)
    (lang / "topo").write_text("<Topology> garbage")
    with pytest.raises(InputError, match="cannot parse"):
        validate_lang(lang)

    # An unreadable L_disambig.fst.
    lang = _broken_copy(langs["pd"], tmp_path / "fst")
    (lang / "L_disambig.fst").write_bytes(b"not an fst")
    with pytest.raises(InputError, match="OpenFst"):
        validate_lang(lang)


def test_cli_prepare_lang_options(langs, tmp_path):
    out = tmp_path / "lang"
    argv = ["prepare-lang", str(langs["dict"]), str(out), "--no-position-dependent-phones",
            "--sil-prob", "0.2"]  # fmt: skip
    assert main(argv) == 0
    assert "position_dependent_phones: false" in (out / "config.yaml").read_text()
    words, cost = transduce(out, "L.fst", "SIL T IY")
    assert words == ["TEA"] and cost == pytest.approx(-math.log(0.2) - math.log(0.8), abs=1e-5)
    assert main(argv) == 0  # finished: a no-op
    assert main(["prepare-lang", str(langs["dict"]), str(tmp_path / "x"), "--sil-prob", "1"]) == 1


def test_forced_rebuild_drops_stale_files(langs, tmp_path):
    out = tmp_path / "lang"
    prepare_lang(langs["dict"], out)
    (out / "G.fst").write_bytes(b"old grammar for the old words.txt")
    prepare_lang(langs["dict"], out, LangConfig(position_dependent_phones=False), force=True)
    assert not (out / "phones" / "word_boundary.txt").exists()
    assert not (out / "G.fst").exists()
    assert not validate_lang(out).position_dependent
