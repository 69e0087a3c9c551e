"""compute-feats: Kaldi parity, CMVN stats, resampling, channels, bad audio, resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torchaudio.compliance import kaldi

from asr_distill.data.kaldi_dir import DataDir, read_data_dir, validate_data_dir, write_data_dir
from asr_distill.errors import InputError
from asr_distill.features.cmvn import apply_cmvn
from asr_distill.features.compute import (
    FeatureConfig,
    KaldiFeatureComputer,
    compute_features,
)
from asr_distill.io.kaldi_ark import read_mat_scp
from tests.conftest import make_wave


def _feats(out: Path) -> dict[str, np.ndarray]:
    return dict(read_mat_scp(out / "feats.scp"))


def test_fbank_equals_torchaudio_of_same_audio(tiny_data_dir: Path, tmp_path: Path):
    out = tmp_path / "fbank"
    summary = compute_features(tiny_data_dir, out, FeatureConfig(kind="fbank"))
    feats = _feats(out)
    data = read_data_dir(tiny_data_dir)
    assert set(feats) == set(data.utt2spk) and summary.num_utts == len(feats)
    for utt, mat in feats.items():
        samples, rate = sf.read(data.wav_scp[utt], dtype="int16")
        ref = kaldi.fbank(
            torch.from_numpy(samples.astype(np.float32)).unsqueeze(0),
            num_mel_bins=40,
            sample_frequency=rate,
            dither=0.0,
        )
        assert mat.shape == (ref.shape[0], 40)
        np.testing.assert_allclose(mat, ref.numpy(), rtol=1e-5, atol=1e-6)
    validate_data_dir(out)


@pytest.mark.parametrize("kind", ["fbank", "mfcc"])
@pytest.mark.parametrize("use_energy", [False, True])
@pytest.mark.parametrize("samples", [400, 401, 16000, 23456])
def test_feature_computer_equals_torchaudio(kind: str, use_energy: bool, samples: int):
    """Our Kaldi fbank / MFCC (window, banks and DCT built once) against
    torchaudio.compliance.kaldi, every option that FeatureConfig passes on."""
    rng = np.random.default_rng(samples)
    wave = torch.from_numpy((rng.standard_normal(samples) * 3000).astype(np.float32))
    config = FeatureConfig(kind=kind, use_energy=use_energy, low_freq_hz=40.0,
                           high_freq_hz=-200.0, preemphasis=0.95)  # fmt: skip
    computer = KaldiFeatureComputer(config)
    common = dict(num_mel_bins=config.num_mel_bins, dither=0.0, use_energy=use_energy,
                  low_freq=40.0, high_freq=-200.0, preemphasis_coefficient=0.95)  # fmt: skip
    if kind == "fbank":
        ref = kaldi.fbank(wave[None], **common)
    else:
        ref = kaldi.mfcc(wave[None], num_ceps=13, cepstral_lifter=22.0, **common)
    ours = computer(wave)
    assert ours.shape == ref.shape == (1 + (samples - 400) // 160, config.dim)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(computer(wave).numpy(), ours.numpy())  # reusable


def test_fbank_matches_kaldi_native_fbank(tiny_data_dir: Path, tmp_path: Path):
    knf = pytest.importorskip("kaldi_native_fbank")
    out = tmp_path / "fbank"
    compute_features(tiny_data_dir, out, FeatureConfig(kind="fbank"))
    data = read_data_dir(tiny_data_dir)
    for utt, mat in _feats(out).items():
        samples, rate = sf.read(data.wav_scp[utt], dtype="int16")
        opts = knf.FbankOptions()
        opts.frame_opts.dither = 0
        opts.mel_opts.num_bins = 40
        fb = knf.OnlineFbank(opts)
        fb.accept_waveform(rate, samples.astype(np.float32).tolist())
        fb.input_finished()
        ref = np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
        assert ref.shape == mat.shape
        np.testing.assert_allclose(mat, ref, atol=2e-3, rtol=1e-3)


def test_mfcc_dim_and_cmvn_stats(tiny_data_dir: Path, tmp_path: Path):
    out = tmp_path / "mfcc"
    compute_features(tiny_data_dir, out, FeatureConfig(kind="mfcc"))
    feats = _feats(out)
    assert all(m.shape[1] == 13 for m in feats.values())
    data = read_data_dir(out)
    cmvn = dict(read_mat_scp(out / "cmvn.scp"))
    assert set(cmvn) == set(data.spk2utt)
    for spk, utts in data.spk2utt.items():
        stacked = np.concatenate([feats[u] for u in utts]).astype(np.float64)
        np.testing.assert_allclose(cmvn[spk][0, :13], stacked.sum(0), rtol=1e-9)
        np.testing.assert_allclose(cmvn[spk][1, :13], (stacked**2).sum(0), rtol=1e-9)
        assert cmvn[spk][0, 13] == len(stacked)
        normed = np.concatenate([apply_cmvn(feats[u], cmvn[spk]) for u in utts])
        np.testing.assert_allclose(normed.mean(0), 0, atol=1e-3)
        normed = np.concatenate([apply_cmvn(feats[u], cmvn[spk], norm_vars=True) for u in utts])
        np.testing.assert_allclose(normed.std(0), 1, atol=1e-3)


def test_parallel_jobs_equal_single_job(tiny_data_dir: Path, tmp_path: Path):
    compute_features(tiny_data_dir, tmp_path / "one", num_jobs=1)
    compute_features(tiny_data_dir, tmp_path / "two", num_jobs=2)
    one, two = _feats(tmp_path / "one"), _feats(tmp_path / "two")
    assert one.keys() == two.keys()
    for utt in one:
        np.testing.assert_array_equal(one[utt], two[utt])
    assert len(list((tmp_path / "two" / "data").glob("raw_fbank.*.ark"))) == 2


def test_resume_recomputes_only_missing_job(tiny_data_dir: Path, tmp_path: Path):
    out = tmp_path / "fbank"
    compute_features(tiny_data_dir, out, num_jobs=3)
    ref = _feats(out)
    # Simulate a run killed after jobs 1 and 3 finished: job 2 and the done marker are gone.
    (out / ".done").unlink()
    (out / "data" / "raw_fbank.2.ark").unlink()
    (out / "data" / ".raw_fbank.2.ark.q8z1.tmp").write_bytes(b"half an ark")  # its leftover
    mtime1 = (out / "data" / "raw_fbank.1.ark").stat().st_mtime_ns
    compute_features(tiny_data_dir, out, num_jobs=3)
    assert (out / "data" / "raw_fbank.1.ark").stat().st_mtime_ns == mtime1
    assert not list(out.rglob(".*.tmp"))
    again = _feats(out)
    for utt in ref:
        np.testing.assert_array_equal(ref[utt], again[utt])
    # A finished output is a no-op unless forced.
    summary = compute_features(tiny_data_dir, out, num_jobs=3)
    assert (out / "data" / "raw_fbank.1.ark").stat().st_mtime_ns == mtime1
    assert summary.num_frames == 0


def _single_utt_dir(
    root: Path, samples: np.ndarray | None, rate: int = 16000, raw_bytes: bytes | None = None
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "a.wav"
    if raw_bytes is not None:
        path.write_bytes(raw_bytes)
    else:
        sf.write(path, samples, rate, subtype="PCM_16")
    good = root / "b.wav"
    sf.write(good, make_wave(3, 0.5), 16000, subtype="PCM_16")
    data = DataDir(
        {"s1-a": str(path), "s1-b": str(good)},
        {"s1-a": "A", "s1-b": "B"},
        {"s1-a": "s1", "s1-b": "s1"},
    )
    return write_data_dir(data, root / "data")


def test_resamples_non_16k_audio_only_when_asked(tmp_path: Path):
    wave8k = make_wave(1, 0.5, sample_rate=8000)
    d = _single_utt_dir(tmp_path, wave8k, rate=8000)
    with pytest.raises(InputError, match=r"wav.scp:1: audio .*a.wav is sampled at 8000 Hz"):
        compute_features(d, tmp_path / "out")
    summary = compute_features(d, tmp_path / "out", FeatureConfig(resample=True))
    assert summary.num_resampled == 1
    feats = _feats(tmp_path / "out")
    # 0.5 s at 16 kHz with 25 ms / 10 ms frames: 1 + (8000 - 400) // 160 = 48 frames.
    assert feats["s1-a"].shape == (48, 40)


@pytest.mark.parametrize("channel", [None, 1])
def test_stereo_is_an_error_unless_channel_chosen(tmp_path: Path, channel):
    stereo = np.stack([make_wave(1, 0.5), make_wave(2, 0.5)], axis=1)
    d = _single_utt_dir(tmp_path, stereo)
    if channel is None:
        with pytest.raises(InputError, match=r"wav.scp:1: .*a.wav has 2 channels"):
            compute_features(d, tmp_path / "out")
        return
    compute_features(d, tmp_path / "out", FeatureConfig(channel=channel))
    mono_dir = tmp_path / "mono"
    mono = _single_utt_dir(mono_dir, stereo[:, 1])
    compute_features(mono, mono_dir / "out")
    np.testing.assert_array_equal(
        _feats(tmp_path / "out")["s1-a"], _feats(mono_dir / "out")["s1-a"]
    )


@pytest.mark.parametrize(
    ("samples", "raw", "message"),
    [
        (np.zeros(0, dtype=np.int16), None, "empty"),
        (None, b"this is not audio at all", "cannot read audio"),
        (np.zeros(100, dtype=np.int16), None, "shorter than one frame"),
    ],
)
def test_bad_audio_error_or_counted_skip(tmp_path: Path, samples, raw, message):
    d = _single_utt_dir(tmp_path, samples, raw_bytes=raw)
    with pytest.raises(InputError, match=rf"wav.scp:1: .*{message}"):
        compute_features(d, tmp_path / "out")
    summary = compute_features(d, tmp_path / "out2", skip_bad=True)
    assert summary.num_skipped == 1 and summary.num_utts == 1
    assert (tmp_path / "out2" / "skipped.txt").read_text().startswith("s1-a ")
    out = validate_data_dir(tmp_path / "out2")
    assert list(out.utt2spk) == ["s1-b"]


def test_missing_audio_file_names_scp_line(tiny_data_dir: Path, tmp_path: Path):
    data = read_data_dir(tiny_data_dir)
    second = sorted(data.wav_scp)[1]
    Path(data.wav_scp[second]).unlink()
    with pytest.raises(InputError, match=r"wav.scp:2: "):
        compute_features(tiny_data_dir, tmp_path / "out")


def test_pipe_and_segments(tiny_data_dir: Path, tmp_path: Path):
    data = read_data_dir(tiny_data_dir)
    utt = data.utt_ids[0]
    piped = DataDir(
        {"rec1": f"cat {data.wav_scp[utt]} |"},
        {"s1-x": "A", "s1-y": "B"},
        {"s1-x": "s1", "s1-y": "s1"},
    )
    from asr_distill.data.kaldi_dir import Segment

    piped.segments = {"s1-x": Segment("rec1", 0.0, 0.3), "s1-y": Segment("rec1", 0.3, 0.6)}
    d = write_data_dir(piped, tmp_path / "seg")
    compute_features(d, tmp_path / "out")
    feats = _feats(tmp_path / "out")
    full, rate = sf.read(data.wav_scp[utt], dtype="int16")
    part = full[int(0.3 * rate) : int(0.6 * rate)].astype(np.float32)
    ref = kaldi.fbank(torch.from_numpy(part).unsqueeze(0), num_mel_bins=40, dither=0.0)
    np.testing.assert_allclose(feats["s1-y"], ref.numpy(), rtol=1e-5, atol=1e-6)
    shutil.rmtree(tmp_path / "out")


def test_stray_entries_are_an_error_not_dropped(tmp_path: Path):
    """wav.scp / text entries without an utterance in utt2spk, or an utterance without
    a transcript: refused, naming the file and the entry's line in the file."""
    d = _single_utt_dir(tmp_path, make_wave(1, 0.5))
    wav = (d / "wav.scp").read_text()
    (d / "wav.scp").write_text(wav + f"s1-c {tmp_path / 'b.wav'}\n")
    with pytest.raises(InputError, match=r"wav.scp:3: recording 's1-c' is not an utterance"):
        compute_features(d, tmp_path / "out")
    (d / "wav.scp").write_text(wav)
    (d / "text").write_text("s1-a A\n")
    with pytest.raises(InputError, match=r"text: 1 utterance\(s\) of utt2spk have no transcript"):
        compute_features(d, tmp_path / "out")
    assert not (tmp_path / "out" / ".done").exists()


def test_bad_entry_is_named_by_its_line_in_the_file_not_its_sorted_place(tmp_path: Path):
    d = _single_utt_dir(tmp_path, None, raw_bytes=b"not audio")
    lines = (d / "wav.scp").read_text().splitlines()  # s1-a (bad) then s1-b
    (d / "wav.scp").write_text("\n".join(reversed(lines)) + "\n")  # unsorted: s1-a on line 2
    with pytest.raises(InputError, match=r"wav.scp:2: cannot read audio"):
        compute_features(d, tmp_path / "out")


def test_truncated_wav_and_overshooting_segments_warn_count_or_fail(tmp_path: Path):
    d = _single_utt_dir(tmp_path, make_wave(1, 1.0))
    wav = tmp_path / "a.wav"
    data = wav.read_bytes()
    wav.write_bytes(data[: len(data) * 3 // 4])  # header still says 1 s
    summary = compute_features(d, tmp_path / "out")
    assert summary.num_utts == 2
    warned = (tmp_path / "out" / "warnings.txt").read_text()
    assert warned.startswith("s1-a audio ") and "truncated" in warned
    # Segments: a little past the end is cut there (listed); far past is an error
    # naming the segments line; times keep their precision when written back.
    from asr_distill.data.kaldi_dir import Segment

    full = read_data_dir(d)
    seg = DataDir({"rec": str(tmp_path / "b.wav")}, {"s1-x": "A", "s1-y": "B"},
                  {"s1-x": "s1", "s1-y": "s1"})  # fmt: skip
    seg.segments = {"s1-x": Segment("rec", 0.125, 0.3337), "s1-y": Segment("rec", 0.3, 0.6)}
    sd = write_data_dir(seg, tmp_path / "seg")
    assert "s1-x rec 0.125 0.3337" in (sd / "segments").read_text()
    assert full  # b.wav is 0.5 s long
    seg.segments["s1-y"] = Segment("rec", 0.3, 0.7)
    write_data_dir(seg, sd)
    compute_features(sd, tmp_path / "out_seg")
    assert "past the end" in (tmp_path / "out_seg" / "warnings.txt").read_text()
    seg.segments["s1-y"] = Segment("rec", 0.3, 1.2)
    write_data_dir(seg, sd)
    with pytest.raises(InputError, match=r"segments:2: segment ends at 1.2 s, 0.700 s past"):
        compute_features(sd, tmp_path / "out_seg2")


def test_failing_pipe_command_names_the_scp_line(tmp_path: Path):
    d = _single_utt_dir(tmp_path, make_wave(1, 0.5))
    lines = (d / "wav.scp").read_text().splitlines()
    lines[0] = "s1-a sh -c 'echo no such recording >&2; exit 3' |"
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"wav.scp:1: command for 's1-a' failed \(3\).*no such"):
        compute_features(d, tmp_path / "out")
