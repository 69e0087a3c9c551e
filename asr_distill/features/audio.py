"""Reading audio named by ``wav.scp`` entries, Kaldi-style.

An rxfilename is a file path (anything libsndfile reads: WAV, FLAC, ...) or a
shell pipe ``cmd |`` whose standard output is an audio file. Samples are returned
as float32 in the int16 range (as Kaldi sees them), mono, at the requested rate.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from asr_distill.data.kaldi_dir import Segment
from asr_distill.errors import InputError

INT16_SCALE = 32768.0


@dataclasses.dataclass(frozen=True)
class AudioSource:
    """Where an audio entry came from, for error messages: the scp file and line."""

    scp_path: str
    line: int
    recording: str


def _open_bytes(rxfilename: str, source: AudioSource) -> io.BytesIO | str:
    value = rxfilename.strip()
    if not value.endswith("|"):
        return value
    cmd = value[:-1].strip()
    proc = subprocess.run(cmd, shell=True, capture_output=True, check=False)  # Kaldi pipe
    if proc.returncode != 0:
        raise InputError(
            f"command for {source.recording!r} failed ({proc.returncode}): {cmd}: "
            f"{proc.stderr.decode(errors='replace').strip()[:200]}",
            source.scp_path,
            source.line,
        )
    return io.BytesIO(proc.stdout)


def read_audio(
    rxfilename: str,
    source: AudioSource,
    *,
    sample_rate: int = 16000,
    channel: int | None = None,
    segment: Segment | None = None,
) -> tuple[torch.Tensor, int]:
    """Read one recording (or a segment) as mono float32 ``(num_samples,)`` + its file's rate.

    Values are in the int16 range (a full-scale sine peaks near 32767), which is
    what Kaldi's feature extractors expect. Audio at another rate is resampled to
    ``sample_rate``. Multi-channel audio is an error naming the file unless
    ``channel`` (0-based) is given. Unreadable or empty audio raises
    :class:`InputError` naming the scp file, line and audio file.
    """
    target = _open_bytes(rxfilename, source)
    name = rxfilename if isinstance(target, str) else f"output of {rxfilename!r}"
    try:
        with sf.SoundFile(target) as f:
            rate = f.samplerate
            channels = f.channels
            subtype = f.subtype
            start = 0
            frames = -1
            if segment is not None:
                start = round(segment.start_s * rate)
                if segment.end_s != -1:
                    frames = round(segment.end_s * rate) - start
                f.seek(min(start, f.frames))
            is_int = subtype.startswith("PCM_") and subtype not in ("PCM_U8",)
            data = f.read(
                frames=frames, dtype="int16" if subtype == "PCM_16" else "float32", always_2d=True
            )
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise InputError(f"cannot read audio {name}: {e}", source.scp_path, source.line) from None
    if data.shape[0] == 0:
        raise InputError(f"audio {name} is empty (0 samples)", source.scp_path, source.line)
    if channels > 1:
        if channel is None:
            raise InputError(
                f"audio {name} has {channels} channels; choose one with --channel",
                source.scp_path,
                source.line,
            )
        if not 0 <= channel < channels:
            raise InputError(
                f"--channel {channel} out of range for {name} ({channels} channels)",
                source.scp_path,
                source.line,
            )
        data = data[:, channel : channel + 1]
    samples = np.ascontiguousarray(data[:, 0])
    if samples.dtype == np.int16:
        wave = torch.from_numpy(samples.astype(np.float32))
    else:
        # float in [-1, 1) (also 24/32-bit PCM read as float): scale to the int16 range.
        wave = torch.from_numpy(samples) * INT16_SCALE
        if not is_int and not torch.isfinite(wave).all():
            raise InputError(f"audio {name} has non-finite samples", source.scp_path, source.line)
    if rate != sample_rate:
        wave = AF.resample(wave, rate, sample_rate)
    return wave, rate
