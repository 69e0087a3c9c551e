"""``compute-feats``: Kaldi-identical fbank / MFCC, per-speaker CMVN stats, ark/scp output.

Features are computed with ``torchaudio.compliance.kaldi`` on int16-range samples,
so they match Kaldi's ``compute-fbank-feats`` / ``compute-mfcc-feats`` with the same
options. Output is a copy of the input data directory with ``feats.scp``,
``cmvn.scp``, ``utt2dur`` and ``utt2num_frames`` added; the matrices live in
``<out>/data/raw_<kind>.<job>.ark`` (Kaldi binary float matrices) and
``<out>/data/cmvn.ark`` (Kaldi's 2 x (D+1) double stats per speaker).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import math
import multiprocessing
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from asr_distill.config import save_config
from asr_distill.data.kaldi_dir import (
    DataDir,
    Segment,
    check_coverage,
    read_data_dir,
    write_data_dir,
    write_table,
)
from asr_distill.errors import InputError
from asr_distill.features.audio import AudioSource, read_audio
from asr_distill.io import atomic_open, atomic_path, remove_stale_temps
from asr_distill.io.kaldi_ark import write_ark_entry
from asr_distill.io.step import step_log

log = logging.getLogger(__name__)

FEATURE_KINDS = ("fbank", "mfcc")


@dataclasses.dataclass
class FeatureConfig:
    """Feature options (Kaldi names in brackets). Defaults match Kaldi's except dither.

    kind: ``fbank`` (log-mel filterbank, the DNN input) or ``mfcc`` (the GMM input).
    num_mel_bins: None means 40 for fbank, 23 for mfcc (Kaldi's MFCC default).
    dither: 0.0 (Kaldi's default is 1.0, which makes features random; 0 keeps runs
    reproducible and equal to a reference computation).
    channel: which channel of multi-channel audio to use (None: such audio is an error).
    resample: resample audio at another rate than ``sample_rate`` (False: an error, since
    a wrongly sampled corpus usually means a wrong file or setting).
    """

    kind: str = "fbank"
    sample_rate: int = 16000  # [--sample-frequency]
    frame_length_ms: float = 25.0  # [--frame-length]
    frame_shift_ms: float = 10.0  # [--frame-shift]
    num_mel_bins: int | None = None  # [--num-mel-bins]
    num_ceps: int = 13  # [--num-ceps], mfcc only
    low_freq_hz: float = 20.0  # [--low-freq]
    high_freq_hz: float = 0.0  # [--high-freq], <= 0 is an offset from Nyquist
    preemphasis: float = 0.97  # [--preemphasis-coefficient]
    dither: float = 0.0  # [--dither]
    use_energy: bool = False  # [--use-energy]
    cepstral_lifter: float = 22.0  # [--cepstral-lifter], mfcc only
    channel: int | None = None
    resample: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"feature kind must be one of {FEATURE_KINDS}, got {self.kind!r}")
        if self.num_mel_bins is None:
            self.num_mel_bins = 40 if self.kind == "fbank" else 23

    @property
    def dim(self) -> int:
        if self.kind == "fbank":
            return int(self.num_mel_bins) + (1 if self.use_energy else 0)
        return self.num_ceps


class KaldiFeatureComputer:
    """Kaldi's ``compute-fbank-feats`` / ``compute-mfcc-feats`` for one
    :class:`FeatureConfig`, with the window, mel banks, DCT and lifter built once.

    The steps are Kaldi's (and ``torchaudio.compliance.kaldi``'s, which the tests
    compare against): frames of ``frame_length`` every ``frame_shift`` that fit the
    audio (``--snip-edges``), the DC offset removed per frame, the raw log-energy
    (floored at log 1 = 0, torchaudio's default ``energy_floor``), pre-emphasis, the
    Povey window, zero-padding to a power of two, the power spectrum, the mel banks
    (``--low-freq``, ``--high-freq``, no VTLN), the log floored at float32's epsilon;
    for MFCC the orthonormal DCT-II and the cepstral lifter. torchaudio rebuilds the
    window and banks for every utterance and takes a complex ``abs`` then squares it;
    this computes ``re^2 + im^2`` directly, which is about twice as fast.
    """

    def __init__(self, config: FeatureConfig):
        from torchaudio.compliance import kaldi

        self.config = config
        rate = float(config.sample_rate)
        self.size = int(rate * config.frame_length_ms / 1000)
        self.shift = int(rate * config.frame_shift_ms / 1000)
        if self.size < 2 or self.shift < 1:
            raise ValueError(f"frame length {config.frame_length_ms} ms / shift "
                             f"{config.frame_shift_ms} ms at {config.sample_rate} Hz")  # fmt: skip
        self.padded = 1 << (self.size - 1).bit_length()  # Kaldi's --round-to-power-of-two
        self.window = torch.hann_window(self.size, periodic=False, dtype=torch.float32).pow(0.85)
        bins = int(config.num_mel_bins)
        banks, _ = kaldi.get_mel_banks(bins, self.padded, rate, config.low_freq_hz,
                                       config.high_freq_hz, 100.0, -500.0, 1.0)  # fmt: skip
        # (padded / 2 + 1, bins): the Nyquist bin has no weight, as in Kaldi
        self.banks = torch.nn.functional.pad(banks.float(), (0, 1)).T.contiguous()
        self.eps = torch.tensor(torch.finfo(torch.float32).eps)
        if config.kind == "mfcc":
            if config.num_ceps > bins:
                raise ValueError(f"num_ceps {config.num_ceps} > num_mel_bins {bins}")
            from torchaudio.functional import create_dct

            dct = create_dct(bins, bins, "ortho")  # (bins, bins), column k = DCT-II basis k
            dct[:, 0] = math.sqrt(1.0 / bins)  # Kaldi's C0 scale
            dct = dct[:, : config.num_ceps]
            if config.cepstral_lifter:
                i = torch.arange(config.num_ceps, dtype=torch.float32)
                q = config.cepstral_lifter
                dct = dct * (1.0 + 0.5 * q * torch.sin(math.pi * i / q))
            self.dct = dct.float().contiguous()  # (bins, num_ceps), lifter folded in

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        """Features ``(num_frames, dim)`` of int16-range mono samples ``(num_samples,)``."""
        cfg = self.config
        wave = wave.to(torch.float32)
        if wave.numel() < self.size:
            return torch.empty((0, cfg.dim), dtype=torch.float32)
        frames = wave.unfold(0, self.size, self.shift)  # (T, size), a view
        if cfg.dither:
            frames = frames + torch.randn_like(frames) * cfg.dither
        frames = frames - frames.mean(dim=1, keepdim=True)
        if cfg.use_energy:  # raw energy: before pre-emphasis and the window
            energy = torch.maximum(frames.pow(2).sum(1), self.eps).log().clamp_min(0.0)
        if cfg.preemphasis:
            previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
            frames = frames - cfg.preemphasis * previous
        spectrum = torch.fft.rfft(frames * self.window, n=self.padded)  # (T, padded/2+1)
        power = spectrum.real.square() + spectrum.imag.square()
        feats = torch.maximum(power @ self.banks, self.eps).log()  # (T, bins)
        if cfg.kind == "mfcc":
            feats = feats @ self.dct  # (T, num_ceps)
            if cfg.use_energy:
                feats[:, 0] = energy
            return feats
        if cfg.use_energy:
            feats = torch.cat([energy[:, None], feats], dim=1)
        return feats


def compute_features_for_wave(wave: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Features ``(num_frames, dim)`` of int16-range mono samples ``(num_samples,)``
    (builds a :class:`KaldiFeatureComputer`; reuse one for many waves)."""
    return KaldiFeatureComputer(config)(wave)


@dataclasses.dataclass
class _Item:
    utt: str
    rxfilename: str
    segment: Segment | None
    source: AudioSource


@dataclasses.dataclass
class FeatureSummary:
    num_utts: int
    num_skipped: int
    num_resampled: int
    num_frames: int
    hours: float
    out_dir: Path


_progress_queue = None


def _init_worker(queue) -> None:  # runs in each worker process
    global _progress_queue
    _progress_queue = queue
    torch.set_num_threads(1)


def _job_state_path(ark_dir: Path, kind: str, job: int) -> Path:
    return ark_dir / f".raw_{kind}.{job}.json"


def _run_job(
    job: int, items: list[_Item], ark_dir: Path, config: FeatureConfig, skip_bad: bool
) -> dict:
    """Compute one job's features into ``raw_<kind>.<job>.ark``; return its scp and stats."""
    ark = (ark_dir / f"raw_{config.kind}.{job}.ark").resolve()
    scp: dict[str, str] = {}
    stats: dict[str, list] = {}
    skipped: dict[str, str] = {}
    resampled = 0
    warnings: dict[str, str] = {}
    computer = KaldiFeatureComputer(config)
    with atomic_path(ark) as tmp, open(tmp, "wb") as f:
        for item in items:
            notes: list[str] = []
            try:
                wave, rate = read_audio(
                    item.rxfilename,
                    item.source,
                    sample_rate=config.sample_rate,
                    channel=config.channel,
                    segment=item.segment,
                    resample=config.resample,
                    notes=notes,
                )
                if wave.numel() < config.sample_rate * config.frame_length_ms / 1000:
                    raise InputError(
                        f"audio of {item.utt!r} is shorter than one frame ({wave.numel()} samples)",
                        item.source.scp_path,
                        item.source.line,
                    )
                feats = computer(wave)
            except InputError as e:
                if not skip_bad:
                    raise
                skipped[item.utt] = e.message if e.path is None else str(e)
                if _progress_queue is not None:
                    _progress_queue.put(1)
                continue
            resampled += int(rate != config.sample_rate)
            if notes:
                warnings[item.utt] = "; ".join(notes)
            mat = feats.numpy().astype(np.float32, copy=False)  # (T, D)
            scp[item.utt] = write_ark_entry(f, ark, item.utt, mat)
            m64 = mat.astype(np.float64)
            stats[item.utt] = [
                int(mat.shape[0]),
                wave.numel() / config.sample_rate,
                m64.sum(axis=0).tolist(),
                (m64 * m64).sum(axis=0).tolist(),
            ]
            if _progress_queue is not None:
                _progress_queue.put(1)
    state = {
        "utts": [it.utt for it in items],
        "scp": scp,
        "stats": stats,
        "skipped": skipped,
        "resampled": resampled,
        "warnings": warnings,
    }
    with atomic_open(_job_state_path(ark_dir, config.kind, job)) as fj:
        json.dump(state, fj)
    return state


def _items(data: DataDir, data_dir: Path) -> list[_Item]:
    # Line numbers as in the files (the tables keep their file order).
    lines = {rec: i for i, rec in enumerate(data.wav_scp, start=1)}
    seg_lines = {u: i for i, u in enumerate(data.segments or {}, start=1)}
    scp_path, seg_path = str(data_dir / "wav.scp"), str(data_dir / "segments")
    out = []
    for utt in data.utt_ids:
        rec = data.recording_of(utt)
        if rec not in data.wav_scp:
            raise InputError(
                f"recording {rec!r} of utterance {utt!r} is not in wav.scp",
                data_dir / ("segments" if data.segments else "wav.scp"), seg_lines.get(utt),
            )  # fmt: skip
        seg = data.segments[utt] if data.segments is not None else None
        source = AudioSource(scp_path, lines[rec], rec, seg_path if seg else None,
                             seg_lines.get(utt))  # fmt: skip
        out.append(_Item(utt, data.wav_scp[rec], seg, source))
    return out


def _load_done_job(ark_dir: Path, kind: str, job: int, items: list[_Item]) -> dict | None:
    state_path = _job_state_path(ark_dir, kind, job)
    if not state_path.is_file() or not (ark_dir / f"raw_{kind}.{job}.ark").is_file():
        return None
    state = json.loads(state_path.read_text(encoding="utf-8"))
    if state.get("utts") != [it.utt for it in items]:
        return None  # a different split (e.g. another --nj): recompute this job
    return state


def compute_features(
    data_dir: str | Path,
    out_dir: str | Path,
    config: FeatureConfig | None = None,
    *,
    num_jobs: int = 1,
    skip_bad: bool = False,
    force: bool = False,
) -> FeatureSummary:
    """Compute features for every utterance of ``data_dir`` into the data dir ``out_dir``.

    Parallel over ``num_jobs`` processes (one ark per job). A job whose ark is
    complete is not recomputed on re-run, so a killed run resumes; a finished
    ``out_dir`` is left alone unless ``force``. Bad audio raises :class:`InputError`
    naming the file, or with ``skip_bad`` is skipped, counted and listed in
    ``<out_dir>/skipped.txt``.
    """
    config = config or FeatureConfig()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    with step_log(out_dir, "compute-feats.log", force=force, config=config) as run:
        if not run:
            data = read_data_dir(out_dir)
            return FeatureSummary(len(data.utt2spk), 0, 0, 0, 0.0, out_dir)
        data = read_data_dir(data_dir)
        check_coverage(data, data_dir)  # nothing in wav.scp or text is dropped silently
        items = _items(data, data_dir)
        if not items:
            raise InputError("data directory has no utterances", data_dir)
        ark_dir = out_dir / "data"
        ark_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out_dir)
        save_config(config, out_dir / "conf" / f"{config.kind}.yaml")
        if force:
            for stale in ark_dir.glob(f".raw_{config.kind}.*.json"):
                stale.unlink()

        num_jobs = max(1, min(num_jobs, len(items)))
        bounds = [len(items) * j // num_jobs for j in range(num_jobs + 1)]
        jobs = {j + 1: items[bounds[j] : bounds[j + 1]] for j in range(num_jobs)}
        states: dict[int, dict] = {}
        for j, job_items in jobs.items():
            state = _load_done_job(ark_dir, config.kind, j, job_items)
            if state is not None:
                states[j] = state
        todo = [j for j in jobs if j not in states]
        if len(states):
            log.info("resuming: %d of %d jobs already done", len(states), num_jobs)

        total = sum(len(jobs[j]) for j in todo)
        with tqdm(total=total, desc=f"compute-feats {config.kind}", unit="utt") as bar:
            if num_jobs == 1 or len(todo) <= 1:
                for j in todo:
                    states[j] = _run_job(j, jobs[j], ark_dir, config, skip_bad)
                    bar.update(len(jobs[j]))
            else:
                ctx = multiprocessing.get_context("spawn")
                queue = ctx.Queue()
                with concurrent.futures.ProcessPoolExecutor(
                    max_workers=len(todo),
                    mp_context=ctx,
                    initializer=_init_worker,
                    initargs=(queue,),
                ) as pool:
                    futures = {
                        pool.submit(_run_job, j, jobs[j], ark_dir, config, skip_bad): j
                        for j in todo
                    }
                    pending = set(futures)
                    while pending:
                        done, pending = concurrent.futures.wait(pending, timeout=0.2)
                        while not queue.empty():
                            bar.update(queue.get())
                        for fut in done:
                            states[futures[fut]] = fut.result()  # re-raises a worker's InputError
                    while not queue.empty():
                        bar.update(queue.get())

        scp: dict[str, str] = {}
        skipped: dict[str, str] = {}
        stats: dict[str, list] = {}
        warnings: dict[str, str] = {}
        resampled = 0
        for state in states.values():
            scp.update(state["scp"])
            skipped.update(state["skipped"])
            stats.update(state["stats"])
            warnings.update(state.get("warnings", {}))
            resampled += state["resampled"]
        (out_dir / "warnings.txt").unlink(missing_ok=True)
        if warnings:  # read anyway, but not as they should be: counted and listed
            with atomic_open(out_dir / "warnings.txt") as f:
                for utt in sorted(warnings):
                    f.write(f"{utt} {warnings[utt]}\n")
            log.warning("%d utterance(s) read with a warning (truncated audio, a segment cut "
                        "at the end of its audio), listed in %s: %s", len(warnings),
                        out_dir / "warnings.txt", next(iter(sorted(warnings.items()))))  # fmt: skip
        if skipped:
            with atomic_open(out_dir / "skipped.txt") as f:
                for utt in sorted(skipped):
                    f.write(f"{utt} {skipped[utt]}\n")
            log.warning(
                "skipped %d bad utterances (listed in %s)", len(skipped), out_dir / "skipped.txt"
            )
        if not scp:
            raise InputError("no utterance could be read", data_dir / "wav.scp")
        if resampled:
            log.info("resampled %d recordings to %d Hz", resampled, config.sample_rate)

        kept = data.subset(scp)
        kept.feats_scp = scp
        kept.utt2dur = kept.utt2dur or {u: stats[u][1] for u in scp}
        kept.cmvn_scp = _write_cmvn(kept, stats, ark_dir, config.dim)
        write_data_dir(kept, out_dir)
        write_table(out_dir / "utt2num_frames", {u: stats[u][0] for u in scp})
        num_frames = sum(stats[u][0] for u in scp)
        hours = sum(stats[u][1] for u in scp) / 3600
        log.info(
            "%s: %d utterances, %d frames (%.2f h) of %d-dim %s",
            out_dir,
            len(scp),
            num_frames,
            hours,
            config.dim,
            config.kind,
        )
        return FeatureSummary(len(scp), len(skipped), resampled, num_frames, hours, out_dir)


def _write_cmvn(data: DataDir, stats: dict[str, list], ark_dir: Path, dim: int) -> dict[str, str]:
    """Per-speaker CMVN stats in Kaldi's layout: row 0 sums (+count), row 1 sums of squares."""
    ark = (ark_dir / "cmvn.ark").resolve()
    scp: dict[str, str] = {}
    with atomic_path(ark) as tmp, open(tmp, "wb") as f:
        for spk, utts in data.spk2utt.items():
            acc = np.zeros((2, dim + 1), dtype=np.float64)  # (2, D+1)
            for utt in utts:
                frames, _, s, ss = stats[utt]
                acc[0, :dim] += s
                acc[1, :dim] += ss
                acc[0, dim] += frames
            scp[spk] = write_ark_entry(f, ark, spk, acc)
    return scp
