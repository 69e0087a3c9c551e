"""Frame store: build from Kaldi features/alignments, splice, batch, shard, subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_distill.cli import main
from asr_distill.errors import InputError
from asr_distill.features.framestore import FrameStore
from asr_distill.features.framestore_build import build_frame_store
from asr_distill.io.kaldi_ark import kaldi_io, write_ark_entry

DIM = 40
LEFT, RIGHT = 20, 5
NUM_PDFS = 50
# Several utterances shorter than the 26-frame window, one of a single frame.
LENGTHS = [1, 3, 10, 25, 26, 31, 57, 80]


def make_utts(lengths=LENGTHS, dim=DIM, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        f"spk{i % 3}-utt{i:03d}": (rng.standard_normal((n, dim)) * 3 + 5).astype(np.float32)
        for i, n in enumerate(lengths)
    }


def make_targets(utts: dict[str, np.ndarray], seed=1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {u: rng.integers(0, NUM_PDFS, size=len(x)).astype(np.int32) for u, x in utts.items()}


def reference_splice(x: np.ndarray, left: int, right: int) -> np.ndarray:
    """Kaldi splice-feats by hand: edge-pad the utterance, then stack shifted copies."""
    padded = np.pad(x, ((left, right), (0, 0)), mode="edge")
    windows = [padded[k : k + len(x)] for k in range(left + 1 + right)]  # W x (T, D)
    return np.stack(windows, axis=1).reshape(len(x), -1)  # (T, W*D)


def fp16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


@pytest.fixture
def utts() -> dict[str, np.ndarray]:
    return make_utts()


@pytest.fixture
def store(tmp_path: Path, utts) -> FrameStore:
    build_frame_store(tmp_path / "fs", utts, targets=make_targets(utts))
    return FrameStore(tmp_path / "fs")


def frame_owner(store: FrameStore) -> dict[int, tuple[str, int]]:
    """Store frame index -> (utterance id, frame within the utterance)."""
    out = {}
    for i, utt in enumerate(store.utt_ids):
        s, e = store.offsets[i], store.offsets[i + 1]
        out.update({int(f): (utt, int(f - s)) for f in range(s, e)})
    return out


def write_feats_scp(root: Path, utts: dict[str, np.ndarray]) -> Path:
    ark = root / "feats.ark"
    with open(ark, "wb") as f:
        scp = {u: write_ark_entry(f, ark, u, x) for u, x in utts.items()}
    (root / "feats.scp").write_text("".join(f"{u} {rx}\n" for u, rx in scp.items()))
    return root / "feats.scp"


def write_int_ark(path: Path, vecs: dict[str, np.ndarray]) -> Path:
    with open(path, "wb") as f:
        for u, v in vecs.items():
            kaldi_io.write_vec_int(f, v, key=u)
    return path


# --------------------------------------------------------------------------- splicing


def test_utterance_splice_equals_reference(store, utts):
    for utt, x in utts.items():
        got = store.utterance(utt, left=LEFT, right=RIGHT).numpy()
        assert got.shape == (len(x), (LEFT + 1 + RIGHT) * DIM)
        np.testing.assert_array_equal(got, reference_splice(fp16(x), LEFT, RIGHT))
    # Position in the view works too, and other contexts splice the same way.
    np.testing.assert_array_equal(
        store.utterance(2, left=1, right=2).numpy(),
        reference_splice(fp16(utts[store.utt_ids[2]]), 1, 2),
    )


def test_batches_are_reference_windows_with_targets(store, utts):
    targets = make_targets(utts)
    owner = frame_owner(store)
    refs = {u: reference_splice(fp16(x), LEFT, RIGHT) for u, x in utts.items()}
    batches = list(store.batches(32, left=LEFT, right=RIGHT, seed=3))
    assert batches[0].inputs.shape == (32, 26 * 40)
    assert batches[0].inputs.dtype == torch.float32
    assert batches[0].targets.dtype == torch.int64
    for batch in batches:
        for row, tgt, frame in zip(batch.inputs, batch.targets, batch.frames, strict=True):
            utt, t = owner[int(frame)]
            np.testing.assert_array_equal(row.numpy(), refs[utt][t])
            assert int(tgt) == targets[utt][t]


def test_device_splice_equals_host_splice(store):
    """Splicing with torch from the store's copy on a device (what train-dnn does on a
    GPU) gives the host's windows and targets, in a subset view too."""
    for view in (store, store.subset(0.5, seed=1)):
        host = list(view.batches(32, left=LEFT, right=RIGHT, seed=3))
        dev = list(view.batches(32, left=LEFT, right=RIGHT, seed=3, device="cpu"))
        assert len(host) == len(dev)
        for a, b in zip(host, dev, strict=True):
            assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
            assert torch.equal(a.frames, b.frames)


def test_fp16_storage_within_fp16_tolerance(store, utts):
    for i, utt in enumerate(store.utt_ids):
        s, e = store.offsets[i], store.offsets[i + 1]
        np.testing.assert_allclose(
            store.features[s:e].astype(np.float32), utts[utt], rtol=2**-11, atol=2**-24
        )
    meta = store.meta
    assert meta["dim"] == DIM and meta["num_frames"] == sum(LENGTHS)
    assert meta["num_utts"] == len(LENGTHS) and meta["num_pdfs"] == NUM_PDFS
    assert store.features.dtype == np.float16 and isinstance(store.features, np.memmap)


# --------------------------------------------------------------------------- iteration


def test_epoch_visits_every_frame_once(store):
    frames = torch.cat([b.frames for b in store.batches(17, seed=0)]).numpy()
    assert np.array_equal(np.sort(frames), np.arange(store.num_frames))
    assert not np.array_equal(frames, np.arange(store.num_frames))  # shuffled
    seq = torch.cat([b.frames for b in store.batches(17, shuffle=False)]).numpy()
    assert np.array_equal(seq, np.arange(store.num_frames))
    assert store.num_batches(17) == len(list(store.batches(17))) == -(-store.num_frames // 17)


def test_labelled_only_skips_unlabelled_frames(tmp_path, utts):
    targets = make_targets(utts)
    first = next(iter(targets))
    targets[first] = np.full(len(targets[first]), -1, dtype=np.int32)
    targets["spk2-utt005"][:4] = -1
    summary = build_frame_store(tmp_path / "fs", utts, targets=targets)
    store = FrameStore(tmp_path / "fs")
    labelled = np.flatnonzero(store.targets >= 0)
    assert summary.num_labelled_frames == len(labelled) == sum(LENGTHS) - len(targets[first]) - 4
    got = torch.cat([b.frames for b in store.batches(16, labelled_only=True, seed=5)]).numpy()
    assert np.array_equal(np.sort(got), labelled)
    assert all((b.targets >= 0).all() for b in store.batches(16, labelled_only=True))
    unlabelled = tmp_path / "unlab"
    build_frame_store(unlabelled, utts)
    with pytest.raises(ValueError, match="no labelled frames"):
        FrameStore(unlabelled).batches(16, labelled_only=True)


def test_shuffle_deterministic_per_seed_and_epoch(store, tmp_path, utts):
    def order(s: FrameStore, seed: int, epoch: int) -> np.ndarray:
        return torch.cat([b.frames for b in s.batches(16, seed=seed, epoch=epoch)]).numpy()

    reopened = FrameStore(store.path)
    assert np.array_equal(order(store, 7, 2), order(reopened, 7, 2))
    assert not np.array_equal(order(store, 7, 2), order(store, 7, 3))
    assert not np.array_equal(order(store, 7, 2), order(store, 8, 2))


def test_start_batch_equals_skipping(store):
    full = list(store.batches(10, seed=4, epoch=1))
    resumed = list(store.batches(10, seed=4, epoch=1, start_batch=5))
    assert len(resumed) == len(full) - 5
    for a, b in zip(full[5:], resumed, strict=True):
        assert torch.equal(a.frames, b.frames)
        assert torch.equal(a.inputs, b.inputs)
        assert torch.equal(a.targets, b.targets)


@pytest.mark.parametrize("drop_last", [False, True])
def test_rank_sharding_covers_single_process_batches(store, drop_last):
    world, batch_size = 3, 20  # 233 frames: a short final batch of 13
    single = list(store.batches(batch_size, seed=9, drop_last=drop_last))
    per_rank = [
        list(store.batches(batch_size, seed=9, rank=r, world_size=world, drop_last=drop_last))
        for r in range(world)
    ]
    assert all(len(batches) == len(single) for batches in per_rank)
    for step, whole in enumerate(single):
        parts = [per_rank[r][step] for r in range(world)]
        assert torch.equal(torch.cat([p.frames for p in parts]), whole.frames)
        assert torch.equal(torch.cat([p.inputs for p in parts]), whole.inputs)
        assert max(len(p.frames) for p in parts) - min(len(p.frames) for p in parts) <= 1
    assert torch.equal(
        torch.cat(
            [b.frames for b in store.batches(batch_size, seed=9, world_size=1, drop_last=drop_last)]
        ),
        torch.cat([b.frames for b in single]),
    )


@pytest.mark.parametrize("device", [None, "cpu"])
def test_a_rank_with_nothing_of_the_short_last_batch_gets_an_empty_batch(store, device):
    """233 frames in batches of 116: the last global batch holds 1 frame, so 2 of 3
    ranks get an empty slice of it (as np.array_split), of the right width."""
    last = [list(store.batches(116, rank=r, world_size=3, shuffle=False, device=device))[-1]
            for r in range(3)]  # fmt: skip
    assert [len(b.frames) for b in last] == [1, 0, 0]
    assert all(b.inputs.shape[1] == 26 * store.dim for b in last)


def test_drop_last(store):
    batches = list(store.batches(20, drop_last=True))
    assert len(batches) == store.num_frames // 20
    assert all(len(b.frames) == 20 for b in batches)


# --------------------------------------------------------------------------- subset, stats


def test_subset_deterministic_and_three_percent(tmp_path):
    utts = make_utts(lengths=[3 + i % 7 for i in range(200)], dim=4)
    build_frame_store(tmp_path / "fs", utts, targets=make_targets(utts))
    store = FrameStore(tmp_path / "fs")
    sub = store.subset(0.03, seed=11)
    assert sub.num_utts == 6
    assert sub.utt_ids == FrameStore(tmp_path / "fs").subset(0.03, seed=11).utt_ids
    assert sub.utt_ids != store.subset(0.03, seed=12).utt_ids
    assert store.subset(0.001, seed=0).num_utts == 1
    assert sub.features is store.features  # a view: no copy of the features
    # Iteration covers exactly the subset's frames, which belong to its utterances.
    frames = torch.cat([b.frames for b in sub.batches(8, seed=0)]).numpy()
    assert np.array_equal(np.sort(frames), sub.frame_indices())
    assert len(frames) == sub.num_frames == sum(len(utts[u]) for u in sub.utt_ids)
    owners = {store.utt_ids[i] for i in np.searchsorted(store.offsets, frames, "right") - 1}
    assert owners == set(sub.utt_ids)
    u = sub.utt_ids[0]
    np.testing.assert_array_equal(
        sub.utterance(u, left=2, right=1).numpy(), reference_splice(fp16(utts[u]), 2, 1)
    )


def test_feature_stats(store):
    x = np.asarray(store.features, dtype=np.float64)
    mean, std = store.feature_stats()
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=0), rtol=1e-12)
    sub = store.subset(0.5, seed=0)
    xs = x[sub.frame_indices()]
    np.testing.assert_allclose(sub.feature_stats()[0], xs.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sub.feature_stats()[1], xs.std(axis=0), rtol=1e-12)


# --------------------------------------------------------------------------- building


@pytest.mark.parametrize("norm_vars", [False, True])
def test_cmvn_equals_hand_computation(tmp_path, utts, norm_vars):
    utt2spk = {u: u.split("-")[0] for u in utts}
    cmvn_ark = tmp_path / "cmvn.ark"
    expected = {}
    with open(cmvn_ark, "wb") as f:
        cmvn_scp = {}
        for spk in sorted(set(utt2spk.values())):
            x = np.concatenate([utts[u] for u in utts if utt2spk[u] == spk]).astype(np.float64)
            stats = np.zeros((2, DIM + 1))
            stats[0, :DIM], stats[1, :DIM], stats[0, DIM] = x.sum(0), (x**2).sum(0), len(x)
            cmvn_scp[spk] = write_ark_entry(f, cmvn_ark, spk, stats)
            mean, std = x.mean(0), x.std(0)
            for u in utts:
                if utt2spk[u] == spk:
                    y = utts[u] - mean
                    expected[u] = y / std if norm_vars else y
    (tmp_path / "cmvn.scp").write_text("".join(f"{s} {rx}\n" for s, rx in cmvn_scp.items()))
    (tmp_path / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utt2spk.items()))
    build_frame_store(
        tmp_path / "fs",
        utts,
        cmvn_scp=tmp_path / "cmvn.scp",
        utt2spk=tmp_path / "utt2spk",
        norm_vars=norm_vars,
    )
    store = FrameStore(tmp_path / "fs")
    assert store.meta["cmvn"]["applied"] and store.meta["cmvn"]["norm_vars"] == norm_vars
    for i, u in enumerate(store.utt_ids):
        s, e = store.offsets[i], store.offsets[i + 1]
        np.testing.assert_allclose(
            store.features[s:e].astype(np.float64), expected[u], rtol=2e-3, atol=2e-3
        )


def test_length_mismatch_names_utterance_and_skip_bad_counts(tmp_path, utts):
    targets = make_targets(utts)
    targets["spk1-utt004"] = targets["spk1-utt004"][:-1]
    with pytest.raises(InputError, match=r"spk1-utt004.*26 feature frames but 25 targets"):
        build_frame_store(tmp_path / "fs", utts, targets=targets)
    assert not (tmp_path / "fs" / ".done").exists()

    del targets["spk2-utt002"]  # features but no targets
    summary = build_frame_store(tmp_path / "fs", utts, targets=targets, skip_bad=True)
    assert summary.num_skipped == 2
    store = FrameStore(tmp_path / "fs")
    assert store.num_utts == len(utts) - 2
    assert "spk1-utt004" not in store.utt_ids and "spk2-utt002" not in store.utt_ids
    skipped = (tmp_path / "fs" / "skipped.txt").read_text().splitlines()
    assert sorted(line.split()[0] for line in skipped) == ["spk1-utt004", "spk2-utt002"]
    assert store.num_frames == sum(LENGTHS) - 26 - 10
    assert store.meta["num_skipped"] == 2


def test_keep_unaligned_keeps_utterances_unlabelled_and_lists_them(tmp_path, utts):
    targets = make_targets(utts)
    dropped = sorted(targets)[0]
    del targets[dropped]
    summary = build_frame_store(tmp_path / "fs", utts, targets=targets, keep_unaligned=True)
    store = FrameStore(tmp_path / "fs")
    assert store.num_utts == len(utts) and summary.num_skipped == 0
    assert (store.utterance_targets(dropped) == -1).all()
    assert (tmp_path / "fs" / "unaligned.txt").read_text().split() == [dropped]
    assert store.meta["num_unaligned"] == 1
    assert store.num_labelled_frames == store.num_frames - len(utts[dropped])


def test_missing_targets_is_an_error_naming_the_utterance(tmp_path, utts):
    targets = make_targets(utts)
    del targets["spk0-utt003"]
    with pytest.raises(InputError, match=r"spk0-utt003.*no targets"):
        build_frame_store(tmp_path / "fs", utts, targets=targets)


def test_non_finite_features_are_an_error(tmp_path, utts):
    utts["spk0-utt006"][5, 3] = np.nan
    with pytest.raises(InputError, match="non-finite features in utterance 'spk0-utt006'"):
        build_frame_store(tmp_path / "fs", utts, skip_bad=True)
    utts["spk0-utt006"][5, 3] = 1e6  # beyond float16
    with pytest.raises(InputError, match=r"spk0-utt006.*float16"):
        build_frame_store(tmp_path / "fs", utts)


@pytest.mark.parametrize("targets_kind", ["ark", "scp"])
def test_kaldi_scp_and_int_ark_round_trip(tmp_path, utts, targets_kind):
    feats_scp = write_feats_scp(tmp_path, utts)
    targets = make_targets(utts)
    ali = write_int_ark(tmp_path / "ali.ark", targets)
    if targets_kind == "scp":
        offsets = {}
        with open(tmp_path / "ali2.ark", "wb") as f:
            for u, v in targets.items():
                offsets[u] = write_ark_entry(f, tmp_path / "ali2.ark", u, v)
        ali = tmp_path / "ali.scp"
        ali.write_text("".join(f"{u} {rx}\n" for u, rx in offsets.items()))
    summary = build_frame_store(tmp_path / "fs", feats_scp, targets=ali)
    assert summary.num_frames == sum(LENGTHS) and summary.num_pdfs == NUM_PDFS
    store = FrameStore(tmp_path / "fs", verify_checksum=True)
    assert store.utt_ids == list(utts)  # scp order
    for u, v in targets.items():
        assert np.array_equal(store.utterance_targets(u).numpy(), v)
    assert store.meta["sources"]["targets"] == str(ali.resolve())
    assert store.meta["sources"]["feats"] == str(feats_scp.resolve())


def test_rerun_is_noop_unless_forced(tmp_path, utts):
    first = build_frame_store(tmp_path / "fs", utts)
    assert first.built
    mtime = (tmp_path / "fs" / "feats.npy").stat().st_mtime_ns
    again = build_frame_store(tmp_path / "fs", make_utts(seed=5))
    assert not again.built and again.num_frames == first.num_frames
    assert (tmp_path / "fs" / "feats.npy").stat().st_mtime_ns == mtime
    forced = build_frame_store(tmp_path / "fs", make_utts(lengths=[4, 5]), force=True)
    assert forced.built and FrameStore(tmp_path / "fs").num_frames == 9


def test_finished_store_is_not_reused_for_other_settings(tmp_path, utts):
    build_frame_store(tmp_path / "fs", utts)  # no targets: an unlabelled transfer set
    with pytest.raises(InputError, match=r"meta\.json: a finished frame store built with other"):
        build_frame_store(tmp_path / "fs", utts, targets=make_targets(utts))
    assert build_frame_store(tmp_path / "fs", utts, targets=make_targets(utts), force=True).built


def test_num_pdfs_given_and_out_of_range(tmp_path, utts):
    targets = make_targets(utts)
    assert build_frame_store(tmp_path / "a", utts, targets=targets, num_pdfs=100).num_pdfs == 100
    with pytest.raises(InputError, match="out of range for num_pdfs=10"):
        build_frame_store(tmp_path / "b", utts, targets=targets, num_pdfs=10)


# --------------------------------------------------------------------------- reopening


def test_reopen_detects_truncated_missing_or_incomplete(tmp_path, utts):
    build_frame_store(tmp_path / "fs", utts, targets=make_targets(utts))
    fs = tmp_path / "fs"
    feats = fs / "feats.npy"
    data = feats.read_bytes()
    feats.write_bytes(data[:-100])
    with pytest.raises(InputError, match=r"feats\.npy.*truncated or corrupt"):
        FrameStore(fs)
    corrupted = bytearray(data)
    corrupted[-1] ^= 0xFF
    feats.write_bytes(bytes(corrupted))
    FrameStore(fs)  # shapes agree: opening is cheap and does not hash
    with pytest.raises(InputError, match="checksum"):
        FrameStore(fs, verify_checksum=True)
    feats.write_bytes(data)
    (fs / "targets.npy").unlink()
    with pytest.raises(InputError, match=r"targets\.npy.*missing"):
        FrameStore(fs)
    build_frame_store(fs, utts, targets=make_targets(utts), force=True)
    meta = json.loads((fs / "meta.json").read_text())
    meta["num_frames"] += 1
    (fs / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"feats\.npy.*meta\.json says"):
        FrameStore(fs)
    (fs / ".done").unlink()
    with pytest.raises(InputError, match="incomplete"):
        FrameStore(fs)


# --------------------------------------------------------------------------- CLI


def test_cli_make_frame_store(tmp_path, utts):
    feats_scp = write_feats_scp(tmp_path, utts)
    targets = make_targets(utts)
    targets["spk0-utt000"] = targets["spk0-utt000"][:0]  # 1 feature frame, 0 targets
    ali = write_int_ark(tmp_path / "ali.ark", targets)
    out = tmp_path / "fs"
    args = ["make-frame-store", str(feats_scp), str(out), "--targets", str(ali)]
    assert main(args) == 1  # the mismatch is reported, not raised
    assert main([*args, "--skip-bad", "--num-pdfs", "64"]) == 0
    store = FrameStore(out)
    assert store.num_utts == len(utts) - 1 and store.num_pdfs == 64
    assert (out / "log" / "make-frame-store.log").is_file()


def test_killed_run_temp_files_are_removed_and_a_full_disk_is_refused(tmp_path, utts,
                                                                      monkeypatch):  # fmt: skip
    out = tmp_path / "fs"
    out.mkdir()
    # What a SIGKILLed build leaves: atomic_path's temporaries, no done marker.
    for name in (".feats.npy.k2j4.tmp", ".targets.npy.x9.tmp"):
        (out / name).write_bytes(b"\0" * 64)
    build_frame_store(out, utts, targets=make_targets(utts))
    assert not list(out.glob(".*.tmp"))
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 100, 100))
    with pytest.raises(InputError, match=r"fs2: the frame store needs .* GiB but only"):
        build_frame_store(tmp_path / "fs2", utts)
    assert not (tmp_path / "fs2" / "feats.npy").exists()


def test_relabelled_and_balanced_views(tmp_path):
    utts = make_utts(lengths=[20 + i for i in range(30)], dim=4)
    targets = make_targets(utts)
    first = next(iter(targets))
    targets[first][:3] = -1  # unlabelled frames stay out and stay -1
    build_frame_store(tmp_path / "fs", utts, targets=targets, num_pdfs=NUM_PDFS)
    store = FrameStore(tmp_path / "fs")
    senones = [3, 7, 11, 20, 21]  # a specialist's set: ids 0..4, the dustbin 5
    mapping = np.full(NUM_PDFS, 5, dtype=np.int32)
    mapping[senones] = np.arange(5)
    view = store.relabelled(mapping)
    assert view.num_pdfs == 6 and store.num_pdfs == NUM_PDFS
    t = np.asarray(store.targets)
    expected = np.where(t >= 0, mapping[np.maximum(t, 0)], -1)
    assert np.array_equal(view.targets, expected)
    assert np.array_equal(view.gather(np.arange(10)).targets.numpy(), expected[:10])
    assert view.num_labelled_frames == store.num_labelled_frames
    with pytest.raises(ValueError):
        store.relabelled(mapping[:-1])

    bal = view.balanced(np.arange(5))
    n_in = int(np.isin(t, senones).sum())
    assert bal.num_batches(10, drop_last=True) == 2 * n_in // 10
    epochs = []
    for epoch in range(2):
        batches = list(bal.batches(10, left=1, right=1, seed=3, epoch=epoch, drop_last=True))
        for b in batches:  # every batch: half from the set, half from the rest
            assert int((b.targets < 5).sum()) == 5 and int((b.targets == 5).sum()) == 5
        frames = torch.cat([b.frames for b in batches]).numpy()
        inside = frames[np.isin(t[frames], senones)]
        assert len(np.unique(inside)) == len(inside)  # each frame of the set at most once
        epochs.append(frames)
    assert not np.array_equal(np.sort(epochs[0]), np.sort(epochs[1]))  # fresh draw of the rest
    again = torch.cat([b.frames for b in bal.batches(10, left=1, right=1, seed=3, epoch=1,
                                                     drop_last=True)]).numpy()  # fmt: skip
    assert np.array_equal(again, epochs[1])  # deterministic for (seed, epoch)
    # unshuffled (evaluation): the same frames every time
    plain = torch.cat([b.frames for b in bal.batches(10, left=1, right=1, shuffle=False)])
    assert len(plain) == 2 * n_in and (t[plain.numpy()] >= 0).all()
