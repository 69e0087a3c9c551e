"""perturb-data-dir (Kaldi's 3-way speed perturbation, seeded augmentation) and
combine-data-dirs with its dev/test leak guard."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import soundfile as sf

from asr_distill.cli import main
from asr_distill.data.kaldi_dir import Segment, read_data_dir, validate_data_dir, write_data_dir
from asr_distill.data.perturb import PerturbConfig, check_disjoint, combine, perturb_data_dir
from asr_distill.errors import InputError

pytestmark = pytest.mark.skipif(shutil.which("sox") is None, reason="needs sox")


def num_samples(data, utt: str) -> int:
    return sf.info(data.wav_scp[data.recording_of(utt)]).frames


def test_speed_3way_like_kaldi(tiny_data_dir, tmp_path):
    out = tmp_path / "sp"
    assert main(["perturb-data-dir", "--nj", "2", str(tiny_data_dir), str(out)]) == 0
    src, sp = read_data_dir(tiny_data_dir), read_data_dir(out)
    validate_data_dir(out)
    assert len(sp.utt2spk) == 3 * len(src.utt2spk)
    for utt, spk in src.utt2spk.items():
        assert sp.wav_scp[utt] == src.wav_scp[utt]  # 1.0: the original, untouched
        for s in (0.9, 1.1):
            new = f"sp{s}-{utt}"
            assert sp.utt2spk[new] == f"sp{s}-{spk}"
            assert sp.text[new] == src.text[utt]
            assert num_samples(sp, new) == pytest.approx(num_samples(src, utt) / s, abs=20)
    assert (out / "audio").is_dir() and (out / ".done").is_file()


def test_augmented_copies_are_seeded_and_independent_of_nj(tiny_data_dir, tmp_path):
    config = PerturbConfig(speeds=[1.0, 1.1], pitch_cents=[-200, 200], reverb_probability=0.5,
                           snr_db=[10, 20], seed=3)  # fmt: skip
    a = perturb_data_dir(tiny_data_dir, tmp_path / "a", config, nj=1)
    b = perturb_data_dir(tiny_data_dir, tmp_path / "b", config, nj=2)
    assert sorted(a.utt2spk) == sorted(b.utt2spk)
    assert all(u.startswith(("sp1.0-", "sp1.1-")) for u in a.utt2spk)  # 1.0 is changed too
    src = read_data_dir(tiny_data_dir)
    for rec in a.wav_scp:
        assert sf.read(a.wav_scp[rec])[0].tolist() == sf.read(b.wav_scp[rec])[0].tolist()
    rec = next(r for r in a.wav_scp if r.startswith("sp1.0-"))
    original, _ = sf.read(src.wav_scp[rec.removeprefix("sp1.0-")])
    assert sf.read(a.wav_scp[rec])[0][: len(original)].tolist() != original.tolist()
    other = perturb_data_dir(tiny_data_dir, tmp_path / "c", dataclasses.replace(config, seed=4))
    assert sf.read(other.wav_scp[rec])[0].tolist() != sf.read(a.wav_scp[rec])[0].tolist()


def test_resume_with_other_settings_starts_over(tiny_data_dir, tmp_path):
    out = tmp_path / "sp"
    perturb_data_dir(tiny_data_dir, out, PerturbConfig(speeds=[0.9], snr_db=[10, 10], seed=0))
    (out / ".done").unlink()  # as if killed before the end
    new = PerturbConfig(speeds=[0.9], snr_db=[10, 10], seed=1)
    resumed = perturb_data_dir(tiny_data_dir, out, new)
    fresh = perturb_data_dir(tiny_data_dir, tmp_path / "fresh", new)
    for rec in resumed.wav_scp:
        assert sf.read(resumed.wav_scp[rec])[0].tolist() == sf.read(fresh.wav_scp[rec])[0].tolist()


def test_segments_and_durations_scaled(tiny_data_dir, tmp_path):
    src = read_data_dir(tiny_data_dir)
    utt = src.utt_ids[0]
    seg = dataclasses.replace(
        src.subset([utt]), segments={utt: Segment(utt, 0.1, 0.4)}, utt2dur={utt: 0.3}
    )
    write_data_dir(seg, tmp_path / "seg")
    out = perturb_data_dir(tmp_path / "seg", tmp_path / "sp", PerturbConfig(speeds=[0.9, 1.1]))
    s = out.segments[f"sp0.9-{utt}"]
    assert (s.recording, s.start_s, s.end_s) == (f"sp0.9-{utt}", pytest.approx(0.1 / 0.9),
                                                 pytest.approx(0.4 / 0.9))  # fmt: skip
    assert out.utt2dur[f"sp1.1-{utt}"] == pytest.approx(0.3 / 1.1)


def test_combine_refuses_dev_or_test_speakers_and_sentences(tiny_data_dir, tmp_path):
    src = read_data_dir(tiny_data_dir)
    utts = src.utt_ids
    train = src.subset([u for u in utts if src.utt2spk[u] != "spk3"])
    dev = src.subset([u for u in utts if src.utt2spk[u] == "spk3"])
    check_disjoint(train, {"dev": dev}, "out")  # disjoint: fine
    sp = dataclasses.replace(dev, utt2spk={f"sp0.9-{u}": f"sp0.9-{s}"
                                           for u, s in dev.utt2spk.items()})  # fmt: skip
    with pytest.raises(InputError, match="speaker"):
        check_disjoint(sp, {"dev": dev}, "out")
    same_text = dataclasses.replace(train, text={u: dev.text[dev.utt_ids[0]].lower()
                                                 for u in train.text})  # fmt: skip
    with pytest.raises(InputError, match="transcript"):
        check_disjoint(same_text, {"dev": dev}, "out")
    with pytest.raises(ValueError, match="two parts"):
        combine([train, train])
    for part, name in ((train, "train"), (dev, "dev")):
        write_data_dir(part, tmp_path / name)
    args = ["combine-data-dirs", "--disjoint-from", str(tmp_path / "dev"), str(tmp_path / "all")]
    assert main([*args, str(tmp_path / "train")]) == 0
    assert main([*args, str(tmp_path / "train"), str(tmp_path / "dev")]) == 1


def test_unreadable_audio_names_the_scp_line(tiny_data_dir, tmp_path):
    src = read_data_dir(tiny_data_dir)
    rec = sorted(src.wav_scp)[1]
    broken = dataclasses.replace(src, wav_scp={**src.wav_scp, rec: str(tmp_path / "gone.flac")})
    write_data_dir(broken, tmp_path / "broken")
    with pytest.raises(InputError, match=r"broken/wav\.scp:2: cannot read audio"):
        perturb_data_dir(tmp_path / "broken", tmp_path / "sp", PerturbConfig(speeds=[0.9]))
    assert not (tmp_path / "sp" / ".done").exists()
