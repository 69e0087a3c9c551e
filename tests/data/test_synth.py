"""make-synth-corpus: text normalisation, speaker inventory, planning, and real synthesis.

Tests marked ``needs_tools`` run flite, espeak-ng and sox (CI installs them) and are
skipped with a reason where they are missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

from asr_distill.cli import main
from asr_distill.config import load_config
from asr_distill.data.librispeech import parse_librispeech_dir
from asr_distill.data.synth import (
    MissingToolError,
    SynthConfig,
    SynthesisError,
    make_synth_corpus,
    plan_corpus,
)
from asr_distill.data.synth import corpus as corpus_module
from asr_distill.data.synth.perturb import Perturbation
from asr_distill.data.synth.plan import check_held_out
from asr_distill.data.synth.render import RenderJob, render_utterance
from asr_distill.data.synth.text import (
    DEFAULT_FORTUNES_DIR,
    Lexicon,
    load_sentences,
    normalise_sentence,
    normalise_words,
    read_fortune_entries,
    split_sentences,
)
from asr_distill.data.synth.voices import (
    default_split_voices,
    parse_voice,
    tts_command,
    voice_inventory,
)
from asr_distill.errors import InputError
from asr_distill.io import is_done

TOOLS = ("flite", "espeak-ng", "sox")
_MISSING = [t for t in TOOLS if shutil.which(t) is None]
needs_tools = pytest.mark.skipif(
    bool(_MISSING) or not Path(DEFAULT_FORTUNES_DIR).is_dir(),
    reason=f"needs flite, espeak-ng, sox and fortunes (missing: {_MISSING or 'fortunes'})",
)

_WORD_TEXT = """the a cat dog sat on mat i don't know what you mean hello world is very good
day and it was dark stormy night she said we will go home now"""
WORDS = tuple(_WORD_TEXT.split())
LEXICON = Lexicon({w: len(w) for w in WORDS})
FLAC_NAME = re.compile(r"^(\d+)-(\d+)-(\d{4})\.flac$")
SEED = 7
TINY_HOURS = 0.012


def tiny_config(seed: int = SEED, hours: float = TINY_HOURS) -> SynthConfig:
    return SynthConfig(hours=hours, seed=seed)


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the log directory."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "log" not in p.relative_to(root).parts
    }


def flac_hashes(root: Path) -> dict[str, str]:
    return {k: v for k, v in file_hashes(root).items() if k.endswith(".flac")}


def read_transcripts(root: Path, split: str) -> dict[str, str]:
    out = {}
    for trans in sorted((root / split).glob("*/*/*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            utt, text = line.split(" ", 1)
            out[utt] = text
    return out


def read_speakers(root: Path) -> list[list[str]]:
    lines = (root / "SPEAKERS.TXT").read_text(encoding="utf-8").splitlines()
    return [[f.strip() for f in line.split("|")] for line in lines if not line.startswith(";")]


# --------------------------------------------------------------------------- text


class TestNormalisation:
    def test_punctuation_removed_and_upper_cased(self):
        raw = 'Hello, world! "The cat" (sat); on: the mat...'
        assert normalise_sentence(raw, LEXICON) == "HELLO WORLD THE CAT SAT ON THE MAT"

    def test_word_internal_apostrophes_kept_others_dropped(self):
        assert normalise_words("I don't know 'what' the dogs' mean") == [
            "I",
            "DON'T",
            "KNOW",
            "WHAT",
            "THE",
            "DOGS",
            "MEAN",
        ]
        assert normalise_words("don\u2019t") == ["DON'T"]

    def test_hyphens_and_dashes_split_words(self):
        assert normalise_words("a well-known fact -- or not") == [
            "A",
            "WELL",
            "KNOWN",
            "FACT",
            "OR",
            "NOT",
        ]

    def test_titles_spelled_out(self):
        assert normalise_words("Mr. Smith met Dr. Who") == [
            "MISTER",
            "SMITH",
            "MET",
            "DOCTOR",
            "WHO",
        ]

    @pytest.mark.parametrize(
        "raw",
        [
            "the cat sat on 3 mats",
            "the cat sat in 1999",
            "the cat & the dog",
            "the cat costs $5",
            "the cat/dog sat",
            "the caf\u00e9 is good",
            "IBM is very good",
        ],
    )
    def test_digits_symbols_non_ascii_and_acronyms_rejected(self, raw):
        lexicon = Lexicon({**LEXICON.num_phones, "caf\u00e9": 3, "ibm": 5, "cat/dog": 3})
        assert normalise_sentence(raw, lexicon) is None

    def test_out_of_dictionary_word_rejects_sentence(self):
        assert normalise_sentence("the cat sat on the mat", LEXICON) is not None
        assert normalise_sentence("the cat sat on the zebra", LEXICON) is None

    def test_word_count_limits(self):
        assert normalise_sentence("the cat", LEXICON) is None
        assert normalise_sentence("the cat sat", LEXICON) == "THE CAT SAT"
        assert normalise_sentence(" ".join(["cat"] * 25), LEXICON) is not None
        assert normalise_sentence(" ".join(["cat"] * 26), LEXICON) is None
        assert normalise_sentence("the cat sat on", LEXICON, min_words=5) is None

    def test_shouted_words_kept_but_short_capitals_read_as_acronyms(self):
        assert normalise_sentence("it was a DARK and STORMY night", LEXICON) == (
            "IT WAS A DARK AND STORMY NIGHT"
        )
        assert normalise_sentence("I said WE will go", LEXICON) is None

    def test_sentence_split_keeps_titles_and_initials(self):
        paragraph = 'Mr. Smith went home. "He slept!" Did J. R. sleep? Yes.'
        assert split_sentences(paragraph) == [
            "Mr. Smith went home.",
            '"He slept!"',
            "Did J. R. sleep?",
            "Yes.",
        ]


def bold(word: str) -> str:
    """``word`` as nroff bold: each character, backspace, the character again."""
    return "".join(f"{c}\x08{c}" for c in word)


def underline(word: str) -> str:
    return "".join(f"_\x08{c}" for c in word)


def write_fortunes(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "animals").write_text(
        "The cat sat on the mat.  The dog sat on the mat\n"
        "and it was a dark night.\n"
        "\t\t-- Some Author, 1999\n"
        "%\n"
        "The cat sat on the mat.\n"
        "%\n"
        "I have 3 cats.  Hello world.\n"
        "%\n"
        f"{bold('Bold')} {underline('text')}: the dog sat on the cat!\n"
    )
    (directory / "animals.dat").write_bytes(b"\x00\x01binary index")
    (directory / "skipped").write_text("The cat sat on the mat and we go home now.\n")
    return directory


def test_fortune_entries_drop_attributions_and_overstrike(tmp_path):
    entries = read_fortune_entries(write_fortunes(tmp_path / "f") / "animals")
    assert len(entries) == 4
    assert "Author" not in entries[0]
    assert entries[3] == "Bold text: the dog sat on the cat!"


def test_load_sentences_dedupes_and_filters(tmp_path):
    fortunes = write_fortunes(tmp_path / "f")
    lexicon = Lexicon({**LEXICON.num_phones, "bold": 4, "text": 4})
    sentences = load_sentences(lexicon, fortunes, exclude=("skipped",))
    assert sentences == [
        "THE CAT SAT ON THE MAT",
        "THE DOG SAT ON THE MAT AND IT WAS A DARK NIGHT",
        "BOLD TEXT THE DOG SAT ON THE CAT",
    ]


def test_missing_fortunes_dir_names_debian_package(tmp_path):
    with pytest.raises(InputError, match="apt-get install fortunes"):
        load_sentences(LEXICON, tmp_path / "nowhere")


# --------------------------------------------------------------------------- speakers


def test_default_speakers_disjoint_and_test_voices_unseen():
    splits = {s: set(default_split_voices(s)) for s in ("train", "dev", "test")}
    assert not splits["train"] & splits["dev"]
    assert not splits["train"] & splits["test"]
    assert not splits["dev"] & splits["test"]
    assert set().union(*splits.values()) == set(voice_inventory())
    flite = {s: {v for v in vs if v.startswith("flite:")} for s, vs in splits.items()}
    assert len(flite["test"]) == 1 and len(flite["dev"]) == 1 and len(flite["train"]) == 2
    variants = {
        s: {parse_voice(v).variant for v in vs if v.startswith("espeak-ng:")}
        for s, vs in splits.items()
    }
    assert not variants["test"] & variants["train"]  # held-out variants, not just pairs
    assert not variants["dev"] & variants["train"]
    ids = [v.speaker_id for v in voice_inventory().values()]
    assert len(set(ids)) == len(ids)
    assert parse_voice("espeak-ng:en-us+m3").speaker_id == 2003


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_every_espeak_speaker_sounds_different(tmp_path):
    """espeak-ng silently ignores unknown voice+variant pairs (``en-gb+m3``): catch that."""
    digests = {}
    for spec, voice in voice_inventory().items():
        if voice.engine == "espeak-ng":
            wav = tmp_path / "x.wav"
            subprocess.run(tts_command(voice, "hello there", str(wav), 175, 50), check=True)
            digests[spec] = hashlib.sha256(wav.read_bytes()).hexdigest()
    assert len(set(digests.values())) == len(digests)


def test_unknown_or_shared_voice_rejected():
    with pytest.raises(InputError, match="unknown voice"):
        parse_voice("espeak-ng:en-us+nosuch")
    config = SynthConfig(dev_voices=("flite:slt",))
    with pytest.raises(InputError, match="disjoint"):
        config.validate()


# --------------------------------------------------------------------------- planning


def sentence_pool(n: int) -> list[str]:
    words = [w.upper() for w in WORDS]
    return [
        " ".join([words[i % 31], words[(i // 31) % 31], words[i // 961], "CAT"]) for i in range(n)
    ]


def test_plan_splits_are_disjoint_and_deterministic():
    sentences = sentence_pool(3000)
    config = SynthConfig(hours=0.5, seed=3)
    plan = plan_corpus(config, sentences, LEXICON)
    by_split = {s: {u.text for u in plan.split_utterances(s)} for s in ("train", "dev", "test")}
    speakers = {s: {u.speaker_id for u in plan.split_utterances(s)} for s in by_split}
    lm = set(plan.lm_sentences)
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not by_split[a] & by_split[b]
        assert not speakers[a] & speakers[b]
    assert all(not texts & lm for texts in by_split.values())
    assert len(lm) >= 0.1 * len(sentences)
    assert set().union(*by_split.values(), lm) == set(sentences)
    assert plan.num_reused_train_sentences == 0
    total_h = sum(u.estimated_s for u in plan.utterances) / 3600
    assert 0.5 <= total_h < 0.51
    dev_h = sum(u.estimated_s for u in plan.split_utterances("dev")) / 3600
    assert 0.045 < dev_h < 0.06
    assert plan_corpus(config, sentences, LEXICON) == plan
    other = plan_corpus(SynthConfig(hours=0.5, seed=4), sentences, LEXICON)
    assert [u.text for u in other.utterances] != [u.text for u in plan.utterances]


def test_lm_text_cap_keeps_splits_and_caps_lm_sentences():
    sentences = sentence_pool(3000)
    full = plan_corpus(SynthConfig(hours=0.5, seed=3), sentences, LEXICON)
    capped = plan_corpus(SynthConfig(hours=0.5, seed=3, lm_max_sentences=100), sentences, LEXICON)
    assert capped.utterances == full.utterances
    assert capped.lm_sentences == full.lm_sentences[:100]


def test_plan_ids_follow_librispeech_layout():
    plan = plan_corpus(
        SynthConfig(hours=0.3, seed=1, utts_per_chapter=3), sentence_pool(2000), LEXICON
    )
    ids = [u.utt_id for u in plan.utterances]
    assert len(set(ids)) == len(ids)
    for u in plan.utterances:
        spk, chapter, n = u.utt_id.split("-")
        assert (int(spk), int(chapter)) == (u.speaker_id, u.chapter_id)
        assert len(n) == 4 and int(n) < 3
        assert u.flac_relpath == f"{u.split}/{spk}/{chapter}/{u.utt_id}.flac"
    assert any(u.chapter_id % 1000 == 2 for u in plan.utterances)


def test_train_reuses_sentences_only_when_pool_runs_out(caplog):
    plan = plan_corpus(SynthConfig(hours=0.5, seed=0), sentence_pool(400), LEXICON)
    assert plan.num_reused_train_sentences > 0
    assert "reusing train sentences" in caplog.text
    held_out = {u.text for u in plan.utterances if u.split != "train"}
    train = [u.text for u in plan.split_utterances("train")]
    assert len(train) > len(set(train))
    assert not held_out & set(train)
    assert not set(plan.lm_sentences) & (held_out | set(train))
    with pytest.raises(InputError, match="not enough for"):
        plan_corpus(SynthConfig(hours=3.0, seed=0), sentence_pool(100), LEXICON)


def test_transfer_split_uses_training_voices_and_fresh_sentences():
    sentences = sentence_pool(3000)
    base = plan_corpus(SynthConfig(hours=0.3, seed=3), sentences, LEXICON)
    plan = plan_corpus(SynthConfig(hours=0.3, seed=3, transfer_hours=0.1), sentences, LEXICON)
    transfer = plan.split_utterances("transfer")
    # The labelled splits are planned as without a transfer set.
    assert [u for u in plan.utterances if u.split != "transfer"] == list(base.utterances)
    assert 0.1 <= sum(u.estimated_s for u in transfer) / 3600 < 0.11
    train_voices = set(SynthConfig().train_voices)
    assert {u.voice.spec for u in transfer} <= train_voices
    others = {u.text for u in plan.utterances if u.split != "transfer"}
    assert not {u.text for u in transfer} & (others | set(plan.lm_sentences))
    # A transfer voice from dev is refused before anything is planned ...
    dev_voice = SynthConfig().dev_voices[0]
    with pytest.raises(InputError, match="disjoint"):
        SynthConfig(transfer_hours=0.1, transfer_voices=(dev_voice,)).validate()
    # ... and a plan that would put a dev sentence or speaker into transfer is refused.
    dev_utt = plan.split_utterances("dev")[0]
    leaked = [dataclasses.replace(transfer[0], text=dev_utt.text), *plan.utterances[1:]]
    with pytest.raises(InputError, match="held-out sentences"):
        check_held_out(dataclasses.replace(plan, utterances=tuple(leaked)))
    leaked = [dataclasses.replace(transfer[0], speaker_id=dev_utt.speaker_id),
              *plan.utterances[1:]]  # fmt: skip
    with pytest.raises(InputError, match="held-out speakers"):
        check_held_out(dataclasses.replace(plan, utterances=tuple(leaked)))


# --------------------------------------------------------------------------- tools


def test_missing_tools_name_debian_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match=r"apt-get install espeak-ng flite sox"):
        make_synth_corpus(tmp_path / "out", tiny_config())
    # Nothing is made but the step's log, which says why it stopped.
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["log"]
    assert "apt-get install" in (tmp_path / "out" / "log" / "make-synth-corpus.log").read_text()


def test_missing_tool_is_a_clean_cli_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    code = main(["make-synth-corpus", "--out", str(tmp_path / "o"), "--hours", "0.01"])
    assert code == 1
    assert "ERROR" in capsys.readouterr().err
    log_text = (tmp_path / "o" / "log" / "make-synth-corpus.log").read_text()
    assert "install them with `apt-get install espeak-ng flite sox`" in log_text


def fake_program(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def perturbation() -> Perturbation:
    return Perturbation(
        speed=1.0,
        pitch_cents=0.0,
        reverberance_pct=None,
        room_scale_pct=10.0,
        pre_delay_ms=0.0,
        wet_gain_db=-5.0,
        snr_db=30.0,
        noise_tilt=1.0,
        lead_s=0.1,
        trail_s=0.1,
        peak_dbfs=-3.0,
        espeak_wpm=175,
        espeak_pitch=50,
    )


def test_synthesis_failure_names_utterance_and_command(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_program(bin_dir, "flite", "echo 'voice exploded' >&2; exit 3")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    job = RenderJob(
        "1004-1004001-0007",
        tmp_path / "x.flac",
        "HELLO WORLD",
        parse_voice("flite:slt"),
        perturbation(),
        (1, 2, 3),
    )
    with pytest.raises(SynthesisError) as err:
        render_utterance(job)
    message = str(err.value)
    assert "1004-1004001-0007" in message
    assert "flite -voice slt -t 'hello world'" in message
    assert "exit status 3: voice exploded" in message
    assert not (tmp_path / "x.flac").exists()
    # it crosses process boundaries intact (workers raise it)
    assert str(pickle.loads(pickle.dumps(err.value))) == message


# --------------------------------------------------------------------------- real corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    summary = make_synth_corpus(out, tiny_config(), nj=2, progress=False)
    assert summary.num_synthesized == sum(summary.num_utterances.values())
    assert all(summary.num_utterances[s] >= 1 for s in ("train", "dev", "test"))
    return out


@needs_tools
def test_layout_is_librispeech(corpus):
    assert sorted(p.name for p in corpus.iterdir() if p.is_dir() and p.name != "log") == [
        "dev",
        "test",
        "train",
    ]
    for split in ("train", "dev", "test"):
        transcripts = read_transcripts(corpus, split)
        flacs = sorted((corpus / split).glob("*/*/*.flac"))
        assert sorted(p.stem for p in flacs) == sorted(transcripts)
        for flac in flacs:
            spk, chapter, _ = FLAC_NAME.match(flac.name).groups()
            assert (flac.parent.parent.name, flac.parent.name) == (spk, chapter)
            assert (flac.parent / f"{spk}-{chapter}.trans.txt").is_file()
            info = sf.info(str(flac))
            assert (info.samplerate, info.channels, info.format, info.subtype) == (
                16000,
                1,
                "FLAC",
                "PCM_16",
            )
            assert 0.5 < info.duration < 20
        assert all(re.fullmatch(r"[A-Z']+( [A-Z']+){2,24}", t) for t in transcripts.values())
        parsed = parse_librispeech_dir(corpus / split, progress=False)
        assert not parsed.skipped
        assert parsed.data.text == transcripts


@needs_tools
def test_speakers_file_and_metadata(corpus):
    rows = read_speakers(corpus)
    dirs = {(p.name, p.parent.name) for p in corpus.glob("*/*") if p.parent.name != "log"}
    dirs = {(spk, split) for spk, split in dirs if spk.isdigit()}
    assert {(r[0], r[2]) for r in rows} == dirs
    for speaker_id, sex, _, minutes, name in rows:
        assert parse_voice(name).speaker_id == int(speaker_id)
        assert sex == parse_voice(name).sex
        assert float(minutes) > 0
    meta = json.loads((corpus / "synth_metadata.json").read_text())
    assert meta["seed"] == SEED and meta["hours_requested"] == TINY_HOURS
    assert meta["complete"] is True
    for tool in TOOLS:
        assert meta["tool_versions"][tool]
    assert abs(sum(meta["hours"].values()) - TINY_HOURS) < 0.01
    assert is_done(corpus)
    # the resolved config remakes the corpus: it is a valid --config file
    assert load_config(SynthConfig, corpus / "config.yaml") == tiny_config()


@needs_tools
def test_splits_have_disjoint_speakers_and_sentences(corpus):
    speakers = {s: {p.name for p in (corpus / s).iterdir()} for s in ("train", "dev", "test")}
    texts = {s: set(read_transcripts(corpus, s).values()) for s in speakers}
    lm = set((corpus / "lm_text.txt").read_text(encoding="utf-8").splitlines())
    assert len(lm) > 1000
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not speakers[a] & speakers[b]
        assert not texts[a] & texts[b]
    for split_texts in texts.values():
        assert not split_texts & lm
    names = {r[0]: r[4] for r in read_speakers(corpus)}
    test_voices = {names[s] for s in speakers["test"]}
    train_voices = {names[s] for s in speakers["train"]}
    assert not test_voices & train_voices


@needs_tools
def test_same_seed_gives_identical_bytes_other_seed_differs(corpus, tmp_path):
    again = tmp_path / "again"
    make_synth_corpus(again, tiny_config(), nj=1, progress=False)
    assert file_hashes(again) == file_hashes(corpus)
    other = tmp_path / "other"
    make_synth_corpus(other, tiny_config(seed=SEED + 1), nj=2, progress=False)
    assert not set(flac_hashes(other).values()) & set(flac_hashes(corpus).values())


@needs_tools
def test_killed_run_resumes_to_the_same_corpus(corpus, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    calls = []

    def dies_after_five(job):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(job.utt_id)
        return render_utterance(job)

    monkeypatch.setattr(corpus_module, "render_utterance", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        make_synth_corpus(out, tiny_config(), nj=1, progress=False)
    monkeypatch.undo()
    assert not is_done(out)
    assert len(list(out.rglob("*.flac"))) == 5
    assert not list(out.rglob("*.trans.txt"))
    # a temporary file left by a kill during a write is cleaned up
    stale = next(out.rglob("*.flac")).parent / ".x.flac.abc123.tmp"
    stale.write_bytes(b"partial")

    summary = make_synth_corpus(out, tiny_config(), nj=2, progress=False)
    assert summary.num_synthesized == sum(summary.num_utterances.values()) - 5
    assert file_hashes(out) == file_hashes(corpus)


@needs_tools
def test_deleted_outputs_are_remade_identically(corpus, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(corpus, out)
    flacs = sorted(out.rglob("*.flac"))
    for flac in flacs[::3]:
        flac.unlink()
    (out / ".done").unlink()
    (out / "SPEAKERS.TXT").unlink()
    next(out.rglob("*.trans.txt")).unlink()
    summary = make_synth_corpus(out, tiny_config(), nj=2, progress=False)
    assert summary.num_synthesized == len(flacs[::3])
    assert file_hashes(out) == file_hashes(corpus)


@needs_tools
def test_rerun_is_noop_unless_force_and_settings_checked(corpus, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["make-synth-corpus", "--out", str(out), "--hours", "0.005", "--seed", "2"]
    assert main([*args, "--nj", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^train\t\d+\.\d{3} h\t\d+ utterances", printed, re.M)
    assert re.search(r"^speed\t[\d.]+x real time", printed, re.M)
    assert (out / "log" / "make-synth-corpus.log").is_file()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")}
    old_hashes = set(flac_hashes(out).values())

    summary = make_synth_corpus(out, SynthConfig(hours=0.005, seed=2), progress=False)
    assert summary.already_done and summary.num_synthesized == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")} == before

    with pytest.raises(InputError, match="changed options: hours"):
        make_synth_corpus(out, SynthConfig(hours=0.006, seed=2), progress=False)

    summary = make_synth_corpus(out, SynthConfig(hours=0.005, seed=3), force=True, progress=False)
    assert summary.num_synthesized == sum(summary.num_utterances.values())
    assert json.loads((out / "synth_metadata.json").read_text())["seed"] == 3
    assert not set(flac_hashes(out).values()) & old_hashes
