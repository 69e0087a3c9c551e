"""Reading audio named by ``wav.scp`` entries, Kaldi-style.

An rxfilename is a file path (anything libsndfile reads: WAV, FLAC, ...) or a
shell pipe ``cmd |`` whose standard output is an audio file. Samples are returned
as float32 in the int16 range (as Kaldi sees them), mono, at the requested rate.
"""

from __future__ import annotations

import dataclasses
import io
import os
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
    segments_path: str | None = None  # the segments file and line of a segment, if any
    segments_line: int | None = None


# Kaldi's extract-segments --max-overshoot: a segment may end this far past the end of its
# audio (cut there, with a warning); further is an error.
MAX_OVERSHOOT_S = 0.5


def _riff_shortfall(target: io.BytesIO | str) -> int:
    """Bytes a RIFF/WAVE file's header promises beyond what the file holds (0 if none,
    or not a WAV, or a streamed header of unknown length): libsndfile reads a truncated
    WAV without a word, as if it were shorter."""
    if isinstance(target, str):
        try:
            with open(target, "rb") as f:
                head = f.read(12)
            size = os.path.getsize(target)
        except OSError:
            return 0  # libsndfile reports it
    else:
        head, size = target.getvalue()[:12], len(target.getvalue())
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return 0
    riff = int.from_bytes(head[4:8], "little")
    if riff == 0 or riff >= 0x7FFF0000:  # streamed (pipes): length unknown when written
        return 0
    return max(0, riff + 8 - size)


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
    resample: bool = False,
    notes: list[str] | None = None,
) -> tuple[torch.Tensor, int]:
    """Read one recording (or a segment) as mono float32 ``(num_samples,)`` + its file's rate.

    Values are in the int16 range (a full-scale sine peaks near 32767), which is
    what Kaldi's feature extractors expect. Audio at another rate is an error unless
    ``resample`` (then resampled to ``sample_rate``). Multi-channel audio is an error
    naming the file unless ``channel`` (0-based) is given. Unreadable or empty audio
    raises :class:`InputError` naming the scp file, line and audio file; so does a
    segment that ends more than ``MAX_OVERSHOOT_S`` past its audio (naming the segments
    line). What is read anyway but deserves a warning (a WAV shorter than its header
    says, a segment cut at the end of its audio) is appended to ``notes``.
    """
    target = _open_bytes(rxfilename, source)
    name = rxfilename if isinstance(target, str) else f"output of {rxfilename!r}"
    short = _riff_shortfall(target)
    if short and notes is not None:
        notes.append(f"audio {name} is truncated: its header promises {short} more bytes")
    where = (source.scp_path, source.line)
    seg_where = (source.segments_path, source.segments_line) if source.segments_path else where
    try:
        with sf.SoundFile(target) as f:
            rate = f.samplerate
            channels = f.channels
            subtype = f.subtype
            start = 0
            frames = -1
            if segment is not None:
                start = round(segment.start_s * rate)
                if start >= f.frames:
                    raise InputError(f"segment starts at {segment.start_s} s, after the end "
                                     f"of its audio {name} ({f.frames / rate:.3f} s)",
                                     *seg_where)  # fmt: skip
                if segment.end_s != -1:
                    end = round(segment.end_s * rate)
                    over = (end - f.frames) / rate
                    if over > MAX_OVERSHOOT_S:
                        raise InputError(f"segment ends at {segment.end_s} s, {over:.3f} s "
                                         f"past the end of its audio {name}",
                                         *seg_where)  # fmt: skip
                    if over > 0 and notes is not None:
                        notes.append(f"segment ends {over:.3f} s past the end of its audio "
                                     f"{name}; cut there")  # fmt: skip
                    frames = min(end, f.frames) - start
                f.seek(start)
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
        if not resample:
            raise InputError(f"audio {name} is sampled at {rate} Hz, the features at "
                             f"{sample_rate} Hz: resample it (compute-feats --resample) or "
                             "set --sample-rate", *where)  # fmt: skip
        wave = AF.resample(wave, rate, sample_rate)
    return wave, rate
