"""Shared fixtures: a tiny Kaldi data directory with synthetic audio, and a small
real-speech system (synthetic corpus, MFCC, lang dir, monophone GMM-HMM) for the GMM,
graph and decoding tests, built once per session through the recipe's CLI steps."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_distill.cli import main
from asr_distill.data.kaldi_dir import DataDir, write_data_dir


def make_wave(seed: int, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """A speech-like test signal: a few harmonics with a wandering pitch plus noise, int16."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 110 + 40 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    x = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(3 * t))
    x = x + 0.05 * rng.standard_normal(t.size)
    return (x / np.abs(x).max() * 12000).astype(np.int16)


def write_tiny_data_dir(
    root: Path, num_speakers: int = 3, utts_per_speaker: int = 2, ext: str = "flac"
) -> Path:
    """Write audio files and a Kaldi data dir for them under ``root``; return the data dir."""
    audio_dir = root / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    wav_scp, text, utt2spk = {}, {}, {}
    for s in range(num_speakers):
        spk = f"spk{s + 1}"
        for u in range(utts_per_speaker):
            utt = f"{spk}-utt{u + 1}"
            path = audio_dir / f"{utt}.{ext}"
            sf.write(path, make_wave(10 * s + u, 0.6 + 0.15 * u), 16000, subtype="PCM_16")
            wav_scp[utt] = str(path)
            text[utt] = f"HELLO WORLD {s} {u}"
            utt2spk[utt] = spk
    return write_data_dir(DataDir(wav_scp, text, utt2spk), root / "data")


def pytest_collection_modifyitems(config, items) -> None:
    """Files with slow tests (the recipes' end-to-end runs) first, whole: under
    pytest-xdist (scripts/test.sh, --no-loadscope-reorder) the workers start them at
    once, and the short tests fill in beside them instead of the longest runs starting
    last."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable


@pytest.fixture
def tiny_data_dir(tmp_path: Path) -> Path:
    return write_tiny_data_dir(tmp_path)


TOOLS = ("flite", "espeak-ng", "sox")


@pytest.fixture(scope="session")
def gmm_system(tmp_path_factory) -> Path:
    """Root dir with data/{train,dev}_mfcc and data/lang (about 4 minutes of speech)."""
    if any(shutil.which(t) is None for t in TOOLS):
        pytest.skip(f"needs {', '.join(TOOLS)} (scripts/setup.sh installs them)")
    root = tmp_path_factory.mktemp("gmm")
    corpus, data = root / "corpus", root / "data"

    def run(*args: str) -> None:
        assert main([str(a) for a in args]) == 0, args

    run("make-synth-corpus", "--out", corpus, "--hours", "0.08", "--seed", "5", "--nj", "2")
    for split in ("train", "dev"):
        run("prepare-librispeech", "--corpus-dir", corpus, "--subset", split, "--out",
            data / split)  # fmt: skip
        run("compute-feats", "--kind", "mfcc", "--nj", "2", data / split,
            data / f"{split}_mfcc")  # fmt: skip
    run("prepare-dict", "--extra-text", data / "dev", data / "train", data / "local" / "dict")
    run("prepare-lang", data / "local" / "dict", data / "lang")
    return root


@pytest.fixture(scope="session")
def mono(gmm_system: Path) -> Path:
    """A monophone model trained on the fixture's train set (12 iterations)."""
    exp = gmm_system / "exp" / "mono"
    data, lang = gmm_system / "data" / "train_mfcc", gmm_system / "data" / "lang"
    assert main(["train-mono", "--nj", "2", "--num-iters", "12", "--tot-gauss", "300",
                 str(data), str(lang), str(exp)]) == 0  # fmt: skip
    return exp


@pytest.fixture(scope="session")
def lang_test(gmm_system: Path) -> Path:
    """data/lang_test: the fixture's lang dir plus a G.fst from a bigram LM trained on
    the train and dev transcripts (so oracle decoding can reach every reference)."""
    data = gmm_system / "data"
    out = data / "lang_test"
    if not (out / "G.fst").is_file():
        args = ["train-lm", "--order", "2", "--vocab", data / "lang" / "words.txt", "--unk-symbol",
                "<UNK>", data / "train", data / "dev", gmm_system / "lm"]  # fmt: skip
        assert main([str(a) for a in args]) == 0
        assert main(["make-g", str(gmm_system / "lm" / "lm.arpa"), str(data / "lang"),
                     str(out)]) == 0  # fmt: skip
    return out
