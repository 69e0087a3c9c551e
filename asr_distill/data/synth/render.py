"""Render one planned utterance: TTS -> sox -> numpy noise -> 16 kHz 16-bit FLAC (atomic).

Runs in worker processes; a job is a picklable :class:`RenderJob` and depends on
nothing else, so any utterance can be (re)made alone with the same bytes.
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from asr_distill.data.synth.perturb import Perturbation, finish_waveform, sox_command
from asr_distill.data.synth.voices import SAMPLE_RATE_HZ, SynthError, Voice, tts_command
from asr_distill.io import atomic_path

TOOL_TIMEOUT_S = 120


class SynthesisError(SynthError):
    """Synthesis of one utterance failed; names the utterance and the command."""

    def __init__(self, utt_id: str, command: list[str], detail: str):
        super().__init__(utt_id, command, detail)
        self.utt_id = utt_id
        self.command = command
        self.detail = detail

    def __str__(self) -> str:
        return (
            f"synthesis of utterance {self.utt_id} failed: {self.detail}\n"
            f"  command: {shlex.join(self.command)}"
        )


@dataclasses.dataclass(frozen=True)
class RenderJob:
    """Everything needed to make one FLAC file."""

    utt_id: str
    flac_path: Path
    text: str
    """Transcript (upper case); spoken in lower case."""
    voice: Voice
    perturbation: Perturbation
    noise_seed: tuple[int, ...]
    """Entropy for the noise generator: (corpus seed, stream, utterance index)."""


def _run(utt_id: str, command: list[str]) -> bytes:
    try:
        result = subprocess.run(command, capture_output=True, timeout=TOOL_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise SynthesisError(utt_id, command, f"program {command[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise SynthesisError(utt_id, command, f"timed out after {TOOL_TIMEOUT_S} s") from None
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", errors="replace").strip()
        raise SynthesisError(utt_id, command, f"exit status {result.returncode}: {stderr}")
    return result.stdout


def synthesize(job: RenderJob) -> np.ndarray:
    """The utterance's int16 samples at 16 kHz (no file written)."""
    with tempfile.TemporaryDirectory(prefix="asr_distill_synth_") as tmp:
        tts_wav = str(Path(tmp) / "tts.wav")
        p = job.perturbation
        tts = tts_command(job.voice, job.text.lower(), tts_wav, p.espeak_wpm, p.espeak_pitch)
        _run(job.utt_id, tts)
        if not Path(tts_wav).is_file() or Path(tts_wav).stat().st_size <= 44:
            raise SynthesisError(job.utt_id, tts, "the TTS program wrote no audio")
        sox = sox_command(tts_wav, p)
        raw = _run(job.utt_id, sox)
    speech = np.frombuffer(raw, dtype="<f4")
    if speech.size == 0 or not np.all(np.isfinite(speech)) or not np.any(speech):
        raise SynthesisError(
            job.utt_id, sox, f"sox produced no usable audio ({speech.size} samples)"
        )
    return finish_waveform(speech, p, np.random.default_rng(list(job.noise_seed)))


def render_utterance(job: RenderJob) -> tuple[str, int]:
    """Synthesize ``job`` and write its FLAC file atomically; returns (utt id, samples)."""
    samples = synthesize(job)
    with atomic_path(job.flac_path) as tmp:
        sf.write(tmp, samples, SAMPLE_RATE_HZ, format="FLAC", subtype="PCM_16")
    return job.utt_id, int(samples.size)
