"""Per-utterance perturbations: drawn from a seeded generator, applied by sox and numpy.

sox changes speed (tempo and pitch together), shifts pitch, adds light reverb and
resamples to 16 kHz; numpy pads silence and mixes in coloured Gaussian noise at a
signal-to-noise ratio. sox runs with ``-R`` (repeatable) and writes 32-bit float, so
no dither is added and the same parameters give the same samples.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from asr_distill.data.synth.config import SynthConfig
from asr_distill.data.synth.voices import SAMPLE_RATE_HZ, Voice

DURATION_MODEL = {"flite": (0.077, 0.45), "espeak-ng": (0.0705, 0.50)}
"""Engine -> (seconds per phone, seconds per sentence) of the unperturbed TTS output, fitted
by least squares on a few hundred sentences (about 0.25 s error per sentence; espeak-ng at
its default rate). Used only to plan how many utterances fill the requested hours."""
ESPEAK_DEFAULT_WPM = 175
NOISE_FLOOR_HZ = 100.0


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """The parameters of one utterance (rounded, so they print exactly as used)."""

    speed: float
    pitch_cents: float
    reverberance_pct: float | None
    """None: no reverb."""
    room_scale_pct: float
    pre_delay_ms: float
    wet_gain_db: float
    snr_db: float
    noise_tilt: float
    lead_s: float
    trail_s: float
    peak_dbfs: float
    espeak_wpm: int
    espeak_pitch: int


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], digits: int) -> float:
    return round(float(rng.uniform(bounds[0], bounds[1])), digits)


def sample_perturbation(rng: np.random.Generator, config: SynthConfig) -> Perturbation:
    """Draw one utterance's parameters; always the same number of draws, in the same order."""
    speed = _uniform(rng, config.speed_range, 4)
    pitch_cents = _uniform(rng, config.pitch_cents_range, 1)
    use_reverb = bool(rng.uniform() < config.reverb_probability)
    reverberance = _uniform(rng, config.reverberance_pct_range, 1)
    room_scale = _uniform(rng, config.room_scale_pct_range, 1)
    pre_delay = _uniform(rng, config.pre_delay_ms_range, 1)
    wet_gain = _uniform(rng, config.wet_gain_db_range, 2)
    snr_db = _uniform(rng, config.snr_db_range, 2)
    tilt = _uniform(rng, config.noise_tilt_range, 3)
    lead = _uniform(rng, config.pad_s_range, 3)
    trail = _uniform(rng, config.pad_s_range, 3)
    peak = _uniform(rng, config.peak_dbfs_range, 2)
    wpm = int(rng.integers(config.espeak_wpm_range[0], config.espeak_wpm_range[1], endpoint=True))
    pitch = int(
        rng.integers(config.espeak_pitch_range[0], config.espeak_pitch_range[1], endpoint=True)
    )
    return Perturbation(
        speed=speed,
        pitch_cents=pitch_cents,
        reverberance_pct=reverberance if use_reverb else None,
        room_scale_pct=room_scale,
        pre_delay_ms=pre_delay,
        wet_gain_db=wet_gain,
        snr_db=snr_db,
        noise_tilt=tilt,
        lead_s=lead,
        trail_s=trail,
        peak_dbfs=peak,
        espeak_wpm=wpm,
        espeak_pitch=pitch,
    )


def estimate_seconds(num_phones: int, voice: Voice, p: Perturbation) -> float:
    """Planned duration of an utterance of ``num_phones`` phones (about +-0.3 s)."""
    per_phone_s, per_sentence_s = DURATION_MODEL[voice.engine]
    tts_s = per_phone_s * num_phones + per_sentence_s
    if voice.engine == "espeak-ng":
        tts_s *= ESPEAK_DEFAULT_WPM / p.espeak_wpm
    return tts_s / p.speed + p.lead_s + p.trail_s


def sox_command(in_wav: str, p: Perturbation) -> list[str]:
    """sox reading ``in_wav`` and writing 16 kHz mono 32-bit float raw samples to stdout."""
    effects = ["speed", f"{p.speed:.4f}", "pitch", f"{p.pitch_cents:.1f}"]
    if p.reverberance_pct is not None:
        # reverb [-w] reverberance HF-damping room-scale stereo-depth pre-delay wet-gain
        effects += [
            "reverb",
            f"{p.reverberance_pct:.1f}",
            "50",
            f"{p.room_scale_pct:.1f}",
            "0",
            f"{p.pre_delay_ms:.1f}",
            f"{p.wet_gain_db:.2f}",
        ]
    effects += ["rate", "-h", str(SAMPLE_RATE_HZ)]
    output = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1"]
    output += ["-r", str(SAMPLE_RATE_HZ), "-"]
    return ["sox", "-R", "-V1", in_wav, *output, *effects]


def coloured_noise(num_samples: int, tilt: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-power Gaussian noise whose power spectrum falls as ``1 / f**tilt``.

    The slope flattens below :data:`NOISE_FLOOR_HZ` and the DC component is removed, so
    a steep tilt does not put the noise's power where speech has none.
    """
    white = rng.standard_normal(num_samples)
    if tilt == 0 or num_samples < 2:
        return white
    spectrum = np.fft.rfft(white)
    freqs_hz = np.fft.rfftfreq(num_samples, d=1 / SAMPLE_RATE_HZ)
    gain = np.maximum(freqs_hz, NOISE_FLOOR_HZ) ** (-tilt / 2)
    gain[0] = 0.0
    noise = np.fft.irfft(spectrum * gain, num_samples)
    return noise / np.sqrt(np.mean(noise**2))


def finish_waveform(speech: np.ndarray, p: Perturbation, rng: np.random.Generator) -> np.ndarray:
    """Pad, add noise at ``p.snr_db`` and scale to ``p.peak_dbfs``; returns int16 samples."""
    speech = speech.astype(np.float64)
    speech_power = float(np.mean(speech**2))
    lead = round(p.lead_s * SAMPLE_RATE_HZ)
    trail = round(p.trail_s * SAMPLE_RATE_HZ)
    padded = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    noise = coloured_noise(padded.size, p.noise_tilt, rng)
    mixed = padded + noise * np.sqrt(speech_power / 10 ** (p.snr_db / 10))
    mixed *= 10 ** (p.peak_dbfs / 20) / np.max(np.abs(mixed))
    return np.round(mixed * 32767).astype(np.int16)
