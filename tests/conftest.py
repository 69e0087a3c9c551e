"""Shared fixtures: a tiny Kaldi data directory with synthetic audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

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


@pytest.fixture
def tiny_data_dir(tmp_path: Path) -> Path:
    return write_tiny_data_dir(tmp_path)
