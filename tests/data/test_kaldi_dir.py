"""Kaldi data directories: round trip, validation (validate_data_dir.sh checks), split."""

from __future__ import annotations

from pathlib import Path

import pytest

from asr_distill.cli import main
from asr_distill.data.kaldi_dir import (
    DataDir,
    read_data_dir,
    split_data_dir,
    validate_data_dir,
    write_data_dir,
)
from asr_distill.errors import InputError
from tests.conftest import write_tiny_data_dir


def test_round_trip_sorted_c_locale(tmp_path: Path):
    audio = tmp_path / "x.wav"
    audio.write_bytes(b"")
    utts = ["b-2", "B-1", "a-1", "é-1"]
    data = DataDir(
        wav_scp={u: str(audio) for u in utts},
        text={u: f"WORD {i}" for i, u in enumerate(utts)},
        utt2spk={u: u.split("-")[0] for u in utts},
        utt2dur={u: 1.5 for u in utts},
    )
    d = write_data_dir(data, tmp_path / "d")
    keys = [line.split()[0] for line in (d / "text").read_text().splitlines()]
    assert keys == ["B-1", "a-1", "b-2", "é-1"]  # byte order: upper case before lower
    assert (d / "spk2utt").read_text().splitlines()[0] == "B B-1"
    back = read_data_dir(d)
    assert back.text == data.text and back.utt2dur == data.utt2dur
    validate_data_dir(d)


def _corrupt(d: Path, name: str, content: bytes) -> None:
    (d / name).write_bytes(content)


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("text", b"spk1-utt1 A\nspk1-utt1 B\n", r"text:2: duplicate key 'spk1-utt1'"),
        ("text", b"spk1-utt1 OK\nspk1-utt2 caf\xe9\n", r"text:2: not valid UTF-8"),
        ("utt2spk", b"spk1-utt2 spk1\nspk1-utt1 spk1\n", r"utt2spk:2: not sorted"),
        ("wav.scp", b"spk1-utt1\n", r"wav.scp:1: no value for key 'spk1-utt1'"),
    ],
)
def test_read_errors_name_file_and_line(tiny_data_dir: Path, name, content, pattern):
    _corrupt(tiny_data_dir, name, content)
    with pytest.raises(InputError, match=pattern):
        validate_data_dir(tiny_data_dir)


def test_empty_transcript_rejected(tiny_data_dir: Path):
    text = (tiny_data_dir / "text").read_text().splitlines()
    text[2] = text[2].split()[0]
    (tiny_data_dir / "text").write_text("\n".join(text) + "\n")
    with pytest.raises(InputError, match=r"text:3: empty transcript"):
        validate_data_dir(tiny_data_dir)


def test_transcript_without_audio_and_audio_without_transcript(tiny_data_dir: Path):
    text = (tiny_data_dir / "text").read_text()
    (tiny_data_dir / "text").write_text(text + "spk9-utt1 EXTRA\n")
    with pytest.raises(InputError, match=r"text:7: .*'spk9-utt1' has a transcript but is not"):
        validate_data_dir(tiny_data_dir)
    (tiny_data_dir / "text").write_text("".join(text.splitlines(keepends=True)[1:]))
    with pytest.raises(InputError, match=r"1 utterances have no transcript"):
        validate_data_dir(tiny_data_dir)


def test_missing_audio_file(tiny_data_dir: Path):
    data = read_data_dir(tiny_data_dir)
    Path(data.wav_scp[data.utt_ids[3]]).unlink()
    with pytest.raises(InputError, match=r"wav.scp:4: audio of 'spk2-utt2' does not exist"):
        validate_data_dir(tiny_data_dir)
    validate_data_dir(tiny_data_dir, check_audio=False)


def test_speaker_prefix_order_enforced(tmp_path: Path):
    d = write_tiny_data_dir(tmp_path)
    data = read_data_dir(d)
    # Give spk1's first utterance to speaker 'zz': sorted by speaker != sorted by id.
    data.utt2spk["spk1-utt1"] = "zz"
    write_data_dir(data, d)
    with pytest.raises(InputError, match="sorted by speaker differ"):
        validate_data_dir(d)


def test_spk2utt_mismatch(tiny_data_dir: Path):
    (tiny_data_dir / "spk2utt").write_text(
        "spk1 spk1-utt1\nspk2 spk2-utt1 spk2-utt2\nspk3 spk3-utt1 spk3-utt2\n"
    )
    with pytest.raises(InputError, match=r"spk2utt:1: speaker 'spk1' disagrees"):
        validate_data_dir(tiny_data_dir)


@pytest.mark.parametrize("per_utt", [False, True])
def test_split_keeps_speakers_whole_and_covers_everything(tmp_path: Path, per_utt):
    d = write_tiny_data_dir(tmp_path, num_speakers=5, utts_per_speaker=3)
    parts = split_data_dir(d, 3, per_utt=per_utt)
    assert [p.name for p in parts] == ["1", "2", "3"]
    seen: list[str] = []
    for p in parts:
        part = validate_data_dir(p)
        assert part.utt2spk
        seen += part.utt_ids
        if not per_utt:
            full = read_data_dir(d).spk2utt
            for spk, utts in part.spk2utt.items():
                assert utts == full[spk]
    assert sorted(seen) == read_data_dir(d).utt_ids
    with pytest.raises(InputError, match="cannot split 5 speakers into 6"):
        split_data_dir(d, 6)
    assert main(["split-data-dir", str(d), "6"]) == 1  # one line, no traceback


def test_cli_validate(tiny_data_dir: Path, capsys):
    assert main(["validate-data-dir", str(tiny_data_dir)]) == 0
    (tiny_data_dir / "text").write_text("spk1-utt1 A\n")
    assert main(["validate-data-dir", str(tiny_data_dir)]) == 1


def test_shell_command_entries_are_reported_and_refused_with_no_pipes(tiny_data_dir: Path,
                                                                      capsys):  # fmt: skip
    """Kaldi's 'cmd |' entries run in a shell when read: validate-data-dir says how many
    there are, and --no-pipes refuses them (for untrusted data)."""
    wav = (tiny_data_dir / "wav.scp").read_text().splitlines()
    key, path = wav[1].split(maxsplit=1)
    wav[1] = f"{key} cat {path} |"
    (tiny_data_dir / "wav.scp").write_text("\n".join(wav) + "\n")
    assert main(["validate-data-dir", "--no-audio-check", str(tiny_data_dir)]) == 0
    assert "1 wav.scp entries are shell commands" in capsys.readouterr().err
    with pytest.raises(InputError, match=r"wav.scp:2: 1 entries are shell commands"):
        validate_data_dir(tiny_data_dir, check_audio=False, allow_pipes=False)
    assert main(["validate-data-dir", "--no-pipes", str(tiny_data_dir)]) == 1
