"""LibriSpeech: the archive table, parsing the corpus layout, bad input, and the full step."""

from __future__ import annotations

import functools
import hashlib
import logging
import tarfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_distill.cli import main
from asr_distill.data import librispeech as ls
from asr_distill.data.download import Checksum, ChecksumError, UnsafeArchiveError, part_path
from asr_distill.data.kaldi_dir import read_table, validate_data_dir
from asr_distill.data.librispeech import (
    LM_FILES,
    SUBSETS,
    Resource,
    find_subset_dir,
    parse_librispeech_dir,
    prepare_librispeech,
)
from asr_distill.errors import InputError
from asr_distill.io import is_done

RATE = 16000

# speaker -> chapter -> utterance numbers (two speakers, one with two chapters)
LAYOUT = {"19": {"198": [0, 1]}, "26": {"495": [0], "496": [0, 1]}}


def tone(seconds: float, seed: int, rate: int = RATE, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (3000 * rng.standard_normal((int(seconds * rate), channels))).astype(np.int16)
    return x[:, 0] if channels == 1 else x


def make_corpus(root: Path, subset: str = "dev-clean", layout: dict | None = None) -> Path:
    """A tiny corpus in LibriSpeech layout under ``root/<subset>``; returns the subset dir."""
    subset_dir = root / subset
    seed = 0
    for spk, chapters in (layout or LAYOUT).items():
        for chapter, utts in chapters.items():
            d = subset_dir / spk / chapter
            d.mkdir(parents=True)
            lines = []
            for n in utts:
                utt = f"{spk}-{chapter}-{n:04d}"
                seed += 1
                sf.write(d / f"{utt}.flac", tone(0.25 + 0.05 * n, seed), RATE)
                lines.append(f"{utt} HELLO WORLD NUMBER {n} OF {spk}'S CHAPTER")
            (d / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return subset_dir


def trans_of(subset_dir: Path, spk: str, chapter: str) -> Path:
    return subset_dir / spk / chapter / f"{spk}-{chapter}.trans.txt"


# --------------------------------------------------------------------------- table


def test_table_covers_all_subsets_with_official_urls() -> None:
    full = {
        "train-clean-100",
        "train-clean-360",
        "train-other-500",
        "dev-clean",
        "dev-other",
        "test-clean",
        "test-other",
    }
    assert set(SUBSETS) == full | {"train-clean-5", "dev-clean-2"}
    for name, res in SUBSETS.items():
        assert res.openslr_id == (12 if name in full else 31)
        assert res.url() == f"https://www.openslr.org/resources/{res.openslr_id}/{name}.tar.gz"
        assert res.checksums
    assert SUBSETS["dev-clean"].url("http://mirror/res/") == "http://mirror/res/12/dev-clean.tar.gz"
    for name in (
        "librispeech-lexicon.txt",
        "3-gram.pruned.1e-7.arpa.gz",
        "3-gram.arpa.gz",
        "librispeech-vocab.txt",
    ):
        assert LM_FILES[name].openslr_id == 11 and LM_FILES[name].checksums


# --------------------------------------------------------------------------- parser


def test_parse_good_corpus(tmp_path: Path) -> None:
    subset_dir = make_corpus(tmp_path)
    parsed = parse_librispeech_dir(subset_dir, progress=False)
    data = parsed.data
    assert parsed.skipped == []
    assert sorted(data.utt2spk) == [
        "19-198-0000",
        "19-198-0001",
        "26-495-0000",
        "26-496-0000",
        "26-496-0001",
    ]
    assert data.utt2spk["26-496-0001"] == "26"
    assert data.spk2utt["19"] == ["19-198-0000", "19-198-0001"]
    assert data.text["26-496-0001"] == "HELLO WORLD NUMBER 1 OF 26'S CHAPTER"
    wav = Path(data.wav_scp["19-198-0001"])
    assert wav.is_absolute() and wav == (subset_dir / "19/198/19-198-0001.flac").absolute()
    assert data.utt2dur["19-198-0001"] == pytest.approx(0.30)


@pytest.mark.parametrize("nested", [True, False])
def test_prepare_accepts_both_layouts(tmp_path: Path, nested: bool) -> None:
    corpus = tmp_path / "corpus"
    make_corpus(corpus / "LibriSpeech" if nested else corpus)
    out = tmp_path / "data" / "dev_clean"
    summary = prepare_librispeech(corpus, "dev-clean", out, progress=False)
    assert summary.num_utterances == 5 and summary.num_speakers == 2 and summary.num_skipped == 0
    data = validate_data_dir(out, require_utt2dur=True)
    assert len(data.wav_scp) == 5
    assert read_table(out / "spk2utt")["26"] == "26-495-0000 26-496-0000 26-496-0001"
    assert float(read_table(out / "utt2dur")["26-496-0001"]) == pytest.approx(0.30)
    assert is_done(out)
    assert not (out / "skipped.txt").exists()


def test_both_layouts_present_is_ambiguous(tmp_path: Path) -> None:
    make_corpus(tmp_path / "LibriSpeech")
    make_corpus(tmp_path)
    with pytest.raises(InputError, match="ambiguous"):
        find_subset_dir(tmp_path, "dev-clean")
    with pytest.raises(InputError, match="no directory for subset 'dev-other'"):
        find_subset_dir(tmp_path, "dev-other")


def test_synthetic_corpus_names(tmp_path: Path) -> None:
    """Subsets train/dev/test and speaker names with '-' (voice+variant) parse too."""
    make_corpus(tmp_path, "train", {"espeak-en-us": {"0": [0, 1]}, "kal16": {"3": [2]}})
    out = tmp_path / "out"
    prepare_librispeech(tmp_path, "train", out, progress=False)
    utt2spk = read_table(out / "utt2spk")
    assert utt2spk == {
        "espeak-en-us-0-0000": "espeak-en-us",
        "espeak-en-us-0-0001": "espeak-en-us",
        "kal16-3-0002": "kal16",
    }


# --------------------------------------------------------------------------- bad input


def _break_missing_audio(s: Path) -> tuple[Path, int | None, str]:
    (s / "26/496/26-496-0001.flac").unlink()
    return trans_of(s, "26", "496"), 2, "no audio file"


def _break_missing_line(s: Path) -> tuple[Path, int | None, str]:
    trans = trans_of(s, "26", "496")
    trans.write_text(trans.read_text().splitlines()[0] + "\n")
    return s / "26/496/26-496-0001.flac", None, "no line for it"


def _break_missing_trans_file(s: Path) -> tuple[Path, int | None, str]:
    trans_of(s, "19", "198").unlink()
    return s / "19/198/19-198-0000.flac", None, "no transcript file"


def _break_duplicate(s: Path) -> tuple[Path, int | None, str]:
    trans = trans_of(s, "26", "496")
    lines = trans.read_text().splitlines()
    trans.write_text("\n".join([*lines, lines[1].replace("NUMBER", "NUMERO")]) + "\n")
    return trans, 3, "duplicate utterance id"


def _break_utf8(s: Path) -> tuple[Path, int | None, str]:
    trans = trans_of(s, "26", "496")
    lines = trans.read_bytes().splitlines()
    lines[1] = lines[1] + b" CAF\xe9"
    trans.write_bytes(b"\n".join(lines) + b"\n")
    return trans, 2, "not valid UTF-8"


def _break_no_words(s: Path) -> tuple[Path, int | None, str]:
    trans = trans_of(s, "26", "496")
    lines = trans.read_text().splitlines()
    trans.write_text(f"{lines[0]}\n26-496-0001\n")
    return trans, 2, "no words"


def _break_bad_id(s: Path) -> tuple[Path, int | None, str]:
    trans = trans_of(s, "26", "496")
    lines = trans.read_text().splitlines()
    trans.write_text(f"{lines[0]}\n{lines[1].replace('26-496-0001', '26-999-0001')}\n")
    return trans, 2, "malformed transcript line"


def _break_garbage_audio(s: Path) -> tuple[Path, int | None, str]:
    path = s / "26/496/26-496-0001.flac"
    path.write_bytes(b"this is not a flac file" * 10)
    return path, None, "unreadable audio"


def _break_empty_file(s: Path) -> tuple[Path, int | None, str]:
    path = s / "26/496/26-496-0001.flac"
    path.write_bytes(b"")
    return path, None, "unreadable audio"


def _break_zero_frames(s: Path) -> tuple[Path, int | None, str]:
    path = s / "26/496/26-496-0001.flac"
    sf.write(path, np.zeros(0, dtype=np.int16), RATE, format="WAV")  # valid header, no samples
    return path, None, "no samples"


def _break_rate(s: Path) -> tuple[Path, int | None, str]:
    path = s / "26/496/26-496-0001.flac"
    sf.write(path, tone(0.3, 1, rate=8000), 8000)
    return path, None, "8000 Hz"


def _break_stereo(s: Path) -> tuple[Path, int | None, str]:
    path = s / "26/496/26-496-0001.flac"
    sf.write(path, tone(0.3, 1, channels=2), RATE)
    return path, None, "2 channels"


def _break_truncated(s: Path) -> tuple[Path, int | None, str]:
    """Half a FLAC: its header promises more samples than the file holds."""
    path = s / "26/496/26-496-0001.flac"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, None, "truncated"


def _break_link_out(s: Path) -> tuple[Path, int | None, str]:
    """A symlink that takes the audio out of the corpus dir."""
    path = s / "26/496/26-496-0001.flac"
    outside = s.parent.parent / f"{s.parent.name}-outside.flac"  # beside the corpus root
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)
    return path, None, "resolves outside the corpus dir"


ONE = {"26-496-0001"}
# case -> (breaker, utterances dropped with --skip-bad, keys listed in skipped.txt)
BREAKERS = {
    "line-without-audio": (_break_missing_audio, ONE, ONE),
    "audio-without-line": (_break_missing_line, ONE, ONE),
    "audio-without-transcript-file": (
        _break_missing_trans_file,
        {"19-198-0000", "19-198-0001"},
        {"19-198-0000", "19-198-0001"},
    ),
    "duplicate-id": (_break_duplicate, ONE, ONE),
    "non-utf8": (_break_utf8, ONE, ONE),
    "no-words": (_break_no_words, ONE, ONE),
    # The foreign line is one problem, the audio it leaves without a transcript another.
    "foreign-id": (_break_bad_id, ONE, {"26-999-0001", "26-496-0001"}),
    "garbage-audio": (_break_garbage_audio, ONE, ONE),
    "empty-audio-file": (_break_empty_file, ONE, ONE),
    "zero-frames": (_break_zero_frames, ONE, ONE),
    "8khz": (_break_rate, ONE, ONE),
    "stereo": (_break_stereo, ONE, ONE),
    "link-out-of-corpus": (_break_link_out, ONE, ONE),
    "truncated-flac": (_break_truncated, ONE, ONE),
}


@pytest.mark.parametrize("case", sorted(BREAKERS))
def test_bad_input_is_an_error_naming_file_and_line(tmp_path: Path, case: str) -> None:
    subset_dir = make_corpus(tmp_path)
    path, line, reason = BREAKERS[case][0](subset_dir)
    out = tmp_path / "out"
    with pytest.raises(InputError) as e:
        prepare_librispeech(tmp_path, "dev-clean", out, progress=False)
    assert e.value.path == str(path.absolute())
    assert e.value.line == line
    assert reason in str(e.value)
    assert not is_done(out)


@pytest.mark.parametrize("case", sorted(BREAKERS))
def test_skip_bad_lists_and_counts(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    subset_dir = make_corpus(tmp_path)
    breaker, dropped, listed = BREAKERS[case]
    _, _, reason = breaker(subset_dir)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        summary = prepare_librispeech(tmp_path, "dev-clean", out, skip_bad=True, progress=False)
    kept = set(read_table(out / "utt2spk"))
    assert (
        kept
        == {"19-198-0000", "19-198-0001", "26-495-0000", "26-496-0000", "26-496-0001"} - dropped
    )
    skipped = (out / "skipped.txt").read_text().splitlines()
    assert len(skipped) == summary.num_skipped == len(listed)
    assert {line.split()[0] for line in skipped} == listed
    assert reason in skipped[0]
    assert f"skipped {len(listed)} bad utterance" in caplog.text
    validate_data_dir(out, require_utt2dur=True)
    assert is_done(out)


def test_every_utterance_bad_is_an_error(tmp_path: Path) -> None:
    make_corpus(tmp_path, layout={"1": {"2": [0]}})
    (tmp_path / "dev-clean/1/2/1-2-0000.flac").write_bytes(b"junk")
    with pytest.raises(InputError, match="no usable utterances"):
        prepare_librispeech(tmp_path, "dev-clean", tmp_path / "out", skip_bad=True, progress=False)


# --------------------------------------------------------------------------- the step


def test_rerun_is_a_noop_unless_forced(tmp_path: Path) -> None:
    subset_dir = make_corpus(tmp_path)
    out = tmp_path / "out"
    prepare_librispeech(tmp_path, "dev-clean", out, progress=False)
    trans = trans_of(subset_dir, "19", "198")
    trans.write_text(trans.read_text().replace("HELLO", "GOODBYE"))
    again = prepare_librispeech(tmp_path, "dev-clean", out, progress=False)
    assert again.already_done and again.num_utterances == 5
    assert "HELLO" in read_table(out / "text")["19-198-0000"]
    prepare_librispeech(tmp_path, "dev-clean", out, force=True, progress=False)
    assert "GOODBYE" in read_table(out / "text")["19-198-0000"]


def test_cli_prepare_and_error_exit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    subset_dir = make_corpus(tmp_path / "corpus")
    out = tmp_path / "data" / "dev"
    args = [
        "prepare-librispeech",
        "--corpus-dir",
        str(tmp_path / "corpus"),
        "--subset",
        "dev-clean",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    validate_data_dir(out, require_utt2dur=True)
    assert (out / "log" / "prepare-librispeech.log").is_file()
    (subset_dir / "19/198/19-198-0000.flac").write_bytes(b"junk")
    capsys.readouterr()
    assert main([*args, "--force"]) == 1
    assert "19-198-0000.flac: unreadable audio" in capsys.readouterr().err
    assert main([*args, "--force", "--skip-bad"]) == 0
    assert len(read_table(out / "utt2spk")) == 4


# --------------------------------------------------------------------------- download + extract


@pytest.fixture
def www(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1 (port 0): (its path, URL base)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def publish(
    www_root: Path,
    src_root: Path,
    name: str = "dev-clean.tar.gz",
    extra: tarfile.TarInfo | None = None,
) -> Resource:
    """Tar ``src_root/LibriSpeech`` into ``www_root/12/<name>``; return its table entry."""
    path = www_root / "12" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        tf.add(src_root / "LibriSpeech", arcname="LibriSpeech")
        if extra is not None:
            tf.addfile(extra)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Resource(name, 12, (Checksum("sha256", digest),))


def test_download_extract_parse(
    www: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    www_root, url_base = www
    make_corpus(tmp_path / "src" / "LibriSpeech")
    monkeypatch.setitem(SUBSETS, "dev-clean", publish(www_root, tmp_path / "src"))
    corpus, out = tmp_path / "corpus", tmp_path / "data" / "dev_clean"
    args = [
        "prepare-librispeech",
        "--corpus-dir",
        str(corpus),
        "--subset",
        "dev-clean",
        "--out",
        str(out),
        "--download",
        "--download-dir",
        str(tmp_path / "archives"),
        "--url-base",
        url_base,
        "--no-progress",
    ]
    assert main(args) == 0
    assert (tmp_path / "archives" / "dev-clean.tar.gz").is_file()
    assert (corpus / "LibriSpeech/dev-clean/19/198/19-198-0000.flac").is_file()
    data = validate_data_dir(out, require_utt2dur=True)
    assert len(data.utt2spk) == 5
    assert all(v.startswith(str(corpus.absolute())) for v in data.wav_scp.values())
    # Once extracted, the archive may be deleted: a forced re-run does not fetch it again.
    (tmp_path / "archives" / "dev-clean.tar.gz").unlink()
    assert main([*args, "--force"]) == 0
    assert not (tmp_path / "archives" / "dev-clean.tar.gz").exists()


@pytest.mark.parametrize("bad", ["../escaped.txt", "/tmp/asr-distill-test-absolute.txt", "symlink"])
def test_unsafe_archive_download_writes_nothing(
    www: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    www_root, url_base = www
    make_corpus(tmp_path / "src" / "LibriSpeech")
    if bad == "symlink":
        extra = tarfile.TarInfo("LibriSpeech/dev-clean/19/198/evil.flac")
        extra.type, extra.linkname = tarfile.SYMTYPE, "../../../../../outside"
    else:
        extra = tarfile.TarInfo(bad)
    monkeypatch.setitem(SUBSETS, "dev-clean", publish(www_root, tmp_path / "src", extra=extra))
    work = tmp_path / "work"
    corpus = work / "corpus"
    with pytest.raises(UnsafeArchiveError) as e:
        prepare_librispeech(
            corpus,
            "dev-clean",
            work / "out",
            download=True,
            download_dir=work / "archives",
            url_base=url_base,
            progress=False,
        )
    assert "dev-clean.tar.gz" in str(e.value)
    assert not corpus.exists()
    # Only the verified download, and the step's log of the failure: no data dir.
    assert sorted(p.name for p in work.iterdir()) == ["archives", "out"]
    assert sorted(p.name for p in (work / "out").iterdir()) == ["config.yaml", "log"]
    assert not Path("/tmp/asr-distill-test-absolute.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()


def test_wrong_checksum_download(
    www: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    www_root, url_base = www
    make_corpus(tmp_path / "src" / "LibriSpeech")
    publish(www_root, tmp_path / "src")
    wrong = Resource("dev-clean.tar.gz", 12, (Checksum("sha256", "0" * 64),))
    monkeypatch.setitem(SUBSETS, "dev-clean", wrong)
    archives = tmp_path / "archives"
    with pytest.raises(ChecksumError) as e:
        prepare_librispeech(
            tmp_path / "corpus",
            "dev-clean",
            tmp_path / "out",
            download=True,
            download_dir=archives,
            url_base=url_base,
            progress=False,
        )
    assert f"{url_base}/12/dev-clean.tar.gz" in str(e.value)
    assert "0" * 64 in str(e.value)
    assert not (archives / "dev-clean.tar.gz").exists()
    assert not part_path(archives / "dev-clean.tar.gz").exists()
    assert not (tmp_path / "corpus").exists()


def test_unknown_subset_cannot_be_downloaded(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown LibriSpeech subset 'train'"):
        ls.download_subset("train", tmp_path, progress=False)
