"""compute-feats throughput against kaldi-native-fbank, on the same audio in the same run.

Prints the speed of each as x real time (seconds of audio per second of wall time,
one process, one thread) and their ratio. Usage:

    python bench/features.py [--data-dir DATA_DIR] [--max-utts N] [--repeats R]

Without --data-dir it writes 60 s of synthetic audio to a temp data dir.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from asr_distill.data.kaldi_dir import DataDir, read_data_dir, write_data_dir
from asr_distill.features.compute import FeatureConfig, KaldiFeatureComputer, compute_features


def synthetic_data_dir(root: Path, seconds: float = 60.0, utt_s: float = 5.0) -> Path:
    rng = np.random.default_rng(0)
    wav, text, spk = {}, {}, {}
    for i in range(int(seconds / utt_s)):
        x = rng.standard_normal(int(utt_s * 16000)) * 3000
        path = root / f"u{i:03d}.flac"
        sf.write(path, x.astype(np.int16), 16000, subtype="PCM_16")
        utt = f"s1-{i:03d}"
        wav[utt], text[utt], spk[utt] = str(path), "X", "s1"
    return write_data_dir(DataDir(wav, text, spk), root / "data")


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--max-utts", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import kaldi_native_fbank as knf

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data_dir = Path(args.data_dir) if args.data_dir else synthetic_data_dir(tmp_path)
        data = read_data_dir(data_dir)
        utts = data.utt_ids[: args.max_utts]
        waves = [sf.read(data.wav_scp[u], dtype="int16")[0].astype(np.float32) for u in utts]
        audio_s = sum(len(w) for w in waves) / 16000
        tensors = [torch.from_numpy(w) for w in waves]
        lists = [w.tolist() for w in waves]
        config = FeatureConfig(kind="fbank")

        computer = KaldiFeatureComputer(config)

        def ours() -> None:
            for w in tensors:
                computer(w)

        def torchaudio_fbank() -> None:
            from torchaudio.compliance import kaldi

            for w in tensors:
                kaldi.fbank(w.unsqueeze(0), num_mel_bins=40, dither=0.0)

        def theirs() -> None:
            opts = knf.FbankOptions()
            opts.frame_opts.dither = 0
            opts.mel_opts.num_bins = 40
            for w in lists:  # get_frame per frame is the package's only read-out API
                fb = knf.OnlineFbank(opts)
                fb.accept_waveform(16000, w)
                fb.input_finished()
                np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])

        subset_dir = write_data_dir(data.subset(utts), tmp_path / "subset")

        def pipeline() -> None:
            compute_features(subset_dir, tmp_path / "out", config, force=True)

        t_ours = best_of(ours, args.repeats)
        t_ta = best_of(torchaudio_fbank, args.repeats)
        t_knf = best_of(theirs, args.repeats)
        t_pipe = best_of(pipeline, args.repeats)
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} torch {torch.__version__}"
        f" kaldi-native-fbank {getattr(knf, '__version__', '?')}"
    )
    print(f"audio: {len(utts)} utterances, {audio_s:.1f} s")
    print(f"our fbank, KaldiFeatureComputer (in memory):    {audio_s / t_ours:8.1f}x real time")
    print(f"torchaudio.compliance.kaldi fbank (in memory):  {audio_s / t_ta:8.1f}x real time")
    print(f"kaldi-native-fbank OnlineFbank (in memory):     {audio_s / t_knf:8.1f}x real time")
    print(f"compute-feats --nj 1 (read, fbank, ark, CMVN):  {audio_s / t_pipe:8.1f}x real time")
    print(f"ratio ours / kaldi-native-fbank speed:          {t_knf / t_ours:8.2f}")
    print(f"ratio ours / torchaudio speed:                  {t_ta / t_ours:8.2f}")
    print(f"ratio compute-feats / kaldi-native-fbank speed: {t_knf / t_pipe:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
