"""Perturbed copies of a Kaldi data dir: speed perturbation as Kaldi's
``utils/data/perturb_data_dir_speed_3way.sh``, and seeded pitch shift, reverberation
and additive noise.

Each speed factor ``s`` gives a copy whose recordings, utterances and speakers are
prefixed ``sp<s>-`` (``sp0.9-``, ``sp1.1-``; Kaldi's names), whose audio runs ``1/s``
times as long (sox ``speed``: tempo and pitch together) and whose ``segments`` and
``utt2dur`` are scaled by ``1/s``; ``text`` is copied. As in Kaldi's 3-way script, the
factor 1.0 keeps the original entries unchanged, unless another perturbation is asked
for: then every copy is rendered, 1.0 as ``sp1.0-``.

Unlike Kaldi, which writes ``sox ... |`` pipes into ``wav.scp``, the copies' audio is
rendered once into ``OUT/audio/<recording>.flac`` (16 kHz, 16-bit): feature extraction
then reads plain files, and the noise (numpy, seeded per recording) is part of them.
sox runs with ``-R`` and floating-point samples, so the same settings give the same
bytes. A killed run resumes with the files already rendered, unless the settings or the
source changed (then it starts over; it never mixes them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import subprocess
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

from asr_distill.data.kaldi_dir import DataDir, Segment, read_data_dir, write_data_dir
from asr_distill.data.synth.perturb import coloured_noise
from asr_distill.errors import InputError
from asr_distill.io import atomic_open, atomic_path
from asr_distill.io.step import step_log

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
AUDIO_DIR = "audio"
SOURCE_FILE = "source.json"
REVERB_RANGES = {  # sox reverb parameters drawn per recording (as the synthetic corpus)
    "reverberance_pct": (5.0, 40.0),
    "room_scale_pct": (10.0, 50.0),
    "pre_delay_ms": (0.0, 20.0),
    "wet_gain_db": (-8.0, -2.0),
}
NOISE_TILT_RANGE = (0.0, 2.0)  # noise power ~ 1/f**tilt (0 white, 1 pink, 2 brown)


@dataclasses.dataclass
class PerturbConfig:
    """What ``perturb-data-dir`` does.

    speeds: sox speed factors, one copy each [0.9, 1.0, 1.1]; pitch_cents: range of a
    uniform pitch shift in cents (sox ``pitch``; [] = off) []; reverb_probability:
    share of recordings given sox reverberation [0]; snr_db: range of the SNR of added
    coloured Gaussian noise ([] = off) []; seed: of every random draw [0] (draws depend
    on the seed, the copy and the recording id only, never on ``nj``).
    """

    speeds: list[float] = dataclasses.field(default_factory=lambda: [0.9, 1.0, 1.1])
    pitch_cents: list[float] = dataclasses.field(default_factory=list)
    reverb_probability: float = 0.0
    snr_db: list[float] = dataclasses.field(default_factory=list)
    seed: int = 0

    def __post_init__(self) -> None:
        self.speeds = [float(s) for s in self.speeds]
        if not self.speeds or any(not 0.5 <= s <= 2.0 for s in self.speeds):
            raise ValueError(f"speeds must be factors in [0.5, 2], got {self.speeds}")
        if len(set(self.speeds)) != len(self.speeds):
            raise ValueError(f"speeds must be distinct, got {self.speeds}")
        for name in ("pitch_cents", "snr_db"):
            value = [float(x) for x in getattr(self, name)]
            if value and (len(value) != 2 or value[0] > value[1]):
                raise ValueError(f"{name} must be a range 'low,high', got {value}")
            setattr(self, name, value)
        if not 0.0 <= self.reverb_probability <= 1.0:
            raise ValueError(f"reverb_probability must be in [0, 1], not {self.reverb_probability}")

    @property
    def augments(self) -> bool:
        """True when a perturbation other than speed is asked for."""
        return bool(self.pitch_cents or self.snr_db or self.reverb_probability > 0)

    def prefix(self, speed: float) -> str:
        """Id prefix of the copy at ``speed`` ('' for the untouched original)."""
        if speed == 1.0 and not self.augments:
            return ""
        return f"sp{speed}-"


@dataclasses.dataclass(frozen=True)
class _Job:
    """One recording of one copy to render (picklable, self-contained)."""

    rxfilename: str
    scp_path: str
    scp_line: int
    recording: str
    out_path: Path
    speed: float
    pitch_cents: float | None
    reverb: tuple[float, float, float, float] | None
    snr_db: float | None
    noise_tilt: float
    noise_seed: tuple[int, ...]


def _draw(config: PerturbConfig, copy: int, recording: str) -> dict:
    """The random parameters of one recording of one copy: a generator seeded by (seed,
    copy, crc32 of the recording id), so they do not depend on the order of work."""
    key = zlib.crc32(recording.encode("utf-8"))
    rng = np.random.default_rng([config.seed, copy, key])
    pitch = float(rng.uniform(*config.pitch_cents)) if config.pitch_cents else None
    use_reverb = bool(rng.uniform() < config.reverb_probability)
    reverb = tuple(round(float(rng.uniform(*r)), 2) for r in REVERB_RANGES.values())
    snr = float(rng.uniform(*config.snr_db)) if config.snr_db else None
    tilt = float(rng.uniform(*NOISE_TILT_RANGE))
    return {
        "pitch_cents": None if pitch is None else round(pitch, 1),
        "reverb": reverb if use_reverb else None,
        "snr_db": None if snr is None else round(snr, 2),
        "noise_tilt": round(tilt, 3),
        "noise_seed": (config.seed, copy, key, 1),
    }


def sox_effects(speed: float, pitch_cents: float | None, reverb) -> list[str]:
    """sox effects of one copy: speed, then pitch and reverb, back to 16 kHz."""
    effects = ["speed", f"{speed:g}"]
    if pitch_cents is not None:
        effects += ["pitch", f"{pitch_cents:.1f}"]
    if reverb is not None:
        reverberance, room_scale, pre_delay, wet_gain = reverb
        # reverb [-w] reverberance HF-damping room-scale stereo-depth pre-delay wet-gain
        effects += ["reverb", f"{reverberance:.1f}", "50", f"{room_scale:.1f}", "0",
                    f"{pre_delay:.1f}", f"{wet_gain:.2f}"]  # fmt: skip
    return [*effects, "rate", "-h", str(SAMPLE_RATE_HZ)]


def _render(job: _Job) -> tuple[str, int, int]:
    """Render one recording: (recording, samples, clipped samples rescaled)."""
    import torch

    from asr_distill.features.audio import INT16_SCALE, AudioSource, read_audio

    torch.set_num_threads(1)
    source = AudioSource(job.scp_path, job.scp_line, job.recording)
    # Copies are rendered at 16 kHz whatever the source's rate.
    wave, _ = read_audio(job.rxfilename, source, sample_rate=SAMPLE_RATE_HZ, resample=True)
    raw = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(SAMPLE_RATE_HZ)]
    cmd = ["sox", "-R", "-V1", *raw, "-", *raw, "-",
           *sox_effects(job.speed, job.pitch_cents, job.reverb)]  # fmt: skip
    samples_in = (wave.numpy() / INT16_SCALE).astype("<f4").tobytes()
    proc = subprocess.run(cmd, input=samples_in, capture_output=True, check=False)
    if proc.returncode != 0:
        raise InputError(
            f"sox failed on {job.recording!r} ({proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()[:200]}", source.scp_path, job.scp_line,
        )  # fmt: skip
    out = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float64) * INT16_SCALE
    if out.size == 0:
        raise InputError(f"sox wrote no audio for {job.recording!r}", job.scp_path, job.scp_line)
    if job.snr_db is not None:
        power = float(np.mean(out**2))
        noise = coloured_noise(out.size, job.noise_tilt, np.random.default_rng(job.noise_seed))
        out = out + noise * np.sqrt(power / 10 ** (job.snr_db / 10))
    peak = float(np.max(np.abs(out)))
    clipped = int(np.sum(np.abs(out) > 32767))
    if clipped:  # scale the recording down rather than clip it
        out *= 32767 / peak
    with atomic_path(job.out_path) as tmp:
        sf.write(tmp, np.round(out).astype(np.int16), SAMPLE_RATE_HZ, format="FLAC",
                 subtype="PCM_16")  # fmt: skip
    return job.recording, int(out.size), clipped


def _source_digest(src_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("wav.scp", "segments", "utt2spk", "text"):
        path = src_dir / name
        if path.is_file():
            h.update(name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _scp_lines(path: Path) -> dict[str, int]:
    with open(path, "rb") as f:
        return {line.split(maxsplit=1)[0].decode("utf-8", "replace"): i
                for i, line in enumerate(f, start=1) if line.strip()}  # fmt: skip


def perturb_data_dir(
    src_dir: str | Path,
    out_dir: str | Path,
    config: PerturbConfig | None = None,
    *,
    nj: int = 1,
    force: bool = False,
) -> DataDir | None:
    """Write ``out_dir``: the union of the perturbed copies of ``src_dir`` (see the
    module docs). Features and CMVN of the source are not copied (compute them on the
    copies). Returns the new data dir, or None if ``out_dir`` is already finished."""
    config = config or PerturbConfig()
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    with step_log(out_dir, "perturb.log", force=force, config=config) as run:
        if not run:
            return None
        data = read_data_dir(src_dir)
        source = {"src_dir": str(src_dir.resolve()), "sha256": _source_digest(src_dir),
                  "config": dataclasses.asdict(config)}  # fmt: skip
        audio_dir = out_dir / AUDIO_DIR
        previous = out_dir / SOURCE_FILE
        if previous.is_file() and json.loads(previous.read_text("utf-8")) != source:
            log.info("%s: settings or source differ from the killed run's; starting over",
                     out_dir)  # fmt: skip
            for stale in audio_dir.glob("*.flac"):
                stale.unlink()
        with atomic_open(previous) as f:
            json.dump(source, f, indent=2, sort_keys=True)
        audio_dir.mkdir(parents=True, exist_ok=True)
        lines = _scp_lines(src_dir / "wav.scp")
        copies: list[DataDir] = []
        jobs: list[_Job] = []
        for copy, speed in enumerate(config.speeds):
            prefix = config.prefix(speed)
            if not prefix:
                copies.append(dataclasses.replace(data, feats_scp=None, cmvn_scp=None))
                continue
            wav_scp = {}
            for rec, rx in data.wav_scp.items():
                new_rec = prefix + rec
                path = (audio_dir / f"{new_rec}.flac").resolve()
                wav_scp[new_rec] = str(path)
                if not path.is_file():
                    p = _draw(config, copy, rec)
                    jobs.append(_Job(rx, str(src_dir / "wav.scp"), lines.get(rec, 0), rec, path,
                                     speed, p["pitch_cents"], p["reverb"], p["snr_db"],
                                     p["noise_tilt"], p["noise_seed"]))  # fmt: skip
            segments = None
            if data.segments is not None:
                segments = {
                    prefix + u: Segment(prefix + s.recording, s.start_s / speed,
                                        -1 if s.end_s == -1 else s.end_s / speed)
                    for u, s in data.segments.items()
                }  # fmt: skip
            copies.append(DataDir(
                wav_scp=wav_scp,
                text={prefix + u: t for u, t in data.text.items()},
                utt2spk={prefix + u: prefix + s for u, s in data.utt2spk.items()},
                segments=segments,
                utt2dur=None if data.utt2dur is None else
                {prefix + u: d / speed for u, d in data.utt2dur.items()},
            ))  # fmt: skip
        log.info("perturb-data-dir %s: %d recordings x speeds %s (%d to render, %s)",
                 src_dir, len(data.wav_scp), config.speeds, len(jobs),
                 "with pitch/reverb/noise" if config.augments else "speed only")  # fmt: skip
        if nj > 1 and len(jobs) > 1:
            with multiprocessing.get_context("spawn").Pool(nj) as pool:
                results = pool.map(_render, jobs, chunksize=max(1, len(jobs) // (8 * nj)))
        else:
            results = [_render(j) for j in jobs]
        clipped = sum(1 for _, _, c in results if c)
        if clipped:
            log.info("%d rendered recording(s) would have clipped; scaled to full scale", clipped)
        merged = combine(copies)
        write_data_dir(merged, out_dir)
        log.info("perturb-data-dir: %d utterances, %d speakers -> %s", len(merged.utt2spk),
                 len(merged.spk2utt), out_dir)  # fmt: skip
        return merged


def _speaker_of_copy(spk: str) -> str:
    """The source speaker of a (possibly perturbed) speaker id: ``sp0.9-1034`` -> ``1034``."""
    while spk.startswith("sp") and "-" in spk:
        head, rest = spk.split("-", 1)
        try:
            float(head[2:])
        except ValueError:
            break
        spk = rest
    return spk


def _normalise(text: str) -> str:
    return " ".join(text.upper().split())


def check_disjoint(data: DataDir, others: dict[str, DataDir], where: str | Path) -> None:
    """Refuse (:class:`InputError` naming ``where``) a training or transfer set that
    shares a speaker (perturbation prefixes stripped) or a transcript with any of
    ``others`` (name -> data dir: the dev and test sets), which would leak them into
    training."""
    speakers = {_speaker_of_copy(s) for s in data.utt2spk.values()}
    sentences = {_normalise(t) for t in data.text.values() if t.strip()}
    for name, other in others.items():
        shared_spk = speakers & {_speaker_of_copy(s) for s in other.utt2spk.values()}
        if shared_spk:
            raise InputError(
                f"shares {len(shared_spk)} speaker(s) with {name} (e.g. "
                f"{sorted(shared_spk)[0]}): dev/test speakers must not be in training data",
                where,
            )
        shared_text = sentences & {_normalise(t) for t in other.text.values() if t.strip()}
        if shared_text:
            raise InputError(
                f"shares {len(shared_text)} transcript(s) with {name} (e.g. "
                f"{sorted(shared_text)[0]!r}): dev/test sentences must not be in training data",
                where,
            )


def combine(parts: list[DataDir]) -> DataDir:
    """Kaldi's ``utils/combine_data.sh``: the union of data dirs with distinct ids;
    ``segments`` and ``utt2dur`` kept only if every part has them. Features and CMVN are
    not combined (a speaker's CMVN stats change with its utterances): compute them on
    the result. A repeated utterance or recording id is a ValueError."""

    def union(name: str) -> dict | None:
        tables = [getattr(p, name) for p in parts]
        if any(t is None for t in tables):
            return None
        out: dict = {}
        for t in tables:
            repeated = out.keys() & t.keys()
            if repeated:
                raise ValueError(f"id {sorted(repeated)[0]!r} is in two parts ({name})")
            out.update(t)
        return out

    if not parts:
        raise ValueError("nothing to combine")
    seg_parts = [p.segments is not None for p in parts]
    if any(seg_parts) and not all(seg_parts):
        raise ValueError("some parts have segments and some do not")
    return DataDir(wav_scp=union("wav_scp"), text=union("text"), utt2spk=union("utt2spk"),
                   segments=union("segments"), utt2dur=union("utt2dur"))  # fmt: skip


def combine_data_dirs(
    out_dir: str | Path,
    src_dirs: list[str | Path],
    *,
    disjoint_from: list[str | Path] = (),
) -> DataDir:
    """Write the union of ``src_dirs`` to ``out_dir`` (:func:`combine`), after checking
    it shares no speaker or sentence with the data dirs ``disjoint_from``
    (:func:`check_disjoint`)."""
    parts = [read_data_dir(d) for d in src_dirs]
    try:
        merged = combine(parts)
    except ValueError as e:
        raise InputError(f"cannot combine {[str(d) for d in src_dirs]}: {e}") from None
    others = {str(d): read_data_dir(d) for d in disjoint_from}
    check_disjoint(merged, others, out_dir)
    write_data_dir(merged, out_dir)
    log.info("combine-data-dirs: %d utterances, %d speakers from %d dirs -> %s",
             len(merged.utt2spk), len(merged.spk2utt), len(parts), out_dir)  # fmt: skip
    return merged
