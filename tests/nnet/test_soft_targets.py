"""Soft-target cache: parity with the online ensemble, sparse-CE error vs k, refusal of
mismatched stores/temperatures/teachers, kill and re-run safety, CLI round trip."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_distill.cli import soft_target_cmds
from asr_distill.errors import InputError
from asr_distill.features.framestore import FrameStore
from asr_distill.features.framestore_build import build_frame_store
from asr_distill.nnet.ensemble import Ensemble
from asr_distill.nnet.model import DnnConfig, SpliceDnn
from asr_distill.nnet.soft_targets import SoftTargetCache, make_soft_targets

DIM, PDFS, LEFT, RIGHT, T = 5, 8, 2, 1, 2.0


def random_utts(n_utts: int, seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    feats, targets = {}, {}
    for i in range(n_utts):
        t = int(rng.integers(15, 40))
        feats[f"u{i:03d}"] = rng.normal(0, 1, (t, DIM)).astype(np.float32)
        targets[f"u{i:03d}"] = rng.integers(0, PDFS, t).astype(np.int32)
    return feats, targets


def random_model(seed: int, sharpness: float = 3.0) -> SpliceDnn:
    """A random DNN whose outputs are scaled up so its distribution is far from uniform."""
    torch.manual_seed(seed)
    model = SpliceDnn(DnnConfig(num_pdfs=PDFS, feat_dim=DIM, left_context=LEFT,
                                right_context=RIGHT, hidden_layers=2, hidden_dim=16))  # fmt: skip
    with torch.no_grad():
        model.output.weight.mul_(sharpness)
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("soft")
    feats, targets = random_utts(12, seed=0)
    build_frame_store(root / "store", feats, targets=targets, num_pdfs=PDFS)
    other_feats, _ = random_utts(12, seed=1)
    build_frame_store(root / "other_store", other_feats, num_pdfs=PDFS)
    members = []
    for i in range(3):
        random_model(10 + i).save(root / f"teacher{i}")
        members.append(root / f"teacher{i}")
    random_model(99, sharpness=1.0).save(root / "student")
    return {"root": root, "store": root / "store", "other_store": root / "other_store",
            "members": members, "student": root / "student"}  # fmt: skip


def online_and_cached(setup, cache_dir: Path, frames: np.ndarray, **ens_kw):
    """(online ensemble probs (B, P), cached (probs, indices, tail), student logits (B, P))."""
    store = FrameStore(setup["store"])
    batch = store.gather(frames, left=LEFT, right=RIGHT)
    online = Ensemble.load(setup["members"], **ens_kw).log_probs(batch.inputs, T).exp()
    student = SpliceDnn.load(setup["student"])(batch.inputs).detach()
    return online, SoftTargetCache(cache_dir).gather(batch.frames), student


def sparse_ce(student_logits, probs, indices, tail) -> torch.Tensor:
    """Per frame (B,): -sum_topk p_i log q_i - tail/(P-k) * sum_{j not in top-k} log q_j."""
    k = probs.shape[1]
    logq = torch.log_softmax(student_logits / T, dim=-1)  # (B, P)
    logq_top = logq.gather(1, indices)  # (B, k)
    ce = -(probs * logq_top).sum(-1)  # (B,)
    if k < PDFS:
        rest = logq.sum(-1) - logq_top.sum(-1)  # (B,)
        ce = ce - tail / (PDFS - k) * rest
    return ce


def online_ce(student_logits, online_probs) -> torch.Tensor:
    logq = torch.log_softmax(student_logits / T, dim=-1)  # (B, P)
    return -(online_probs * logq).sum(-1)  # (B,)


@pytest.mark.parametrize("combine,weights", [("arithmetic", None), ("geometric", [0.2, 0.3, 0.5])])
def test_full_distribution_matches_online_ensemble(setup, tmp_path, combine, weights):
    out = tmp_path / "soft"
    summary = make_soft_targets(setup["store"], setup["members"], out, temperature=T,
                                top_k=PDFS, combine=combine, weights=weights,
                                batch_size=37, progress=False)  # fmt: skip
    store = FrameStore(setup["store"])
    assert summary.built and summary.num_frames == store.num_frames and summary.top_k == PDFS
    cache = SoftTargetCache(out)
    cache.check(store, temperature=T, model_paths=setup["members"], top_k=PDFS)
    frames = np.random.default_rng(0).permutation(store.num_frames)[:200]
    online, (probs, indices, tail), student = online_and_cached(
        setup, out, frames, combine=combine, weights=weights
    )
    # Every pdf kept: a dense cache, probabilities in pdf order and no indices.
    assert cache.dense and indices is None and not (out / "indices.npy").exists()
    assert probs.dtype == torch.float32 and probs.shape == (200, PDFS) and tail.shape == (200,)
    assert (probs - online).abs().max() < 1e-3
    assert tail.max() < 1e-5
    indices = torch.arange(PDFS).expand(200, PDFS)
    # The teachers are not uniform, or this test would prove little.
    assert online.max(-1).values.mean() > 2 / PDFS
    loss_cached = sparse_ce(student, probs, indices, tail).mean()
    assert abs(loss_cached - online_ce(student, online).mean()) < 1e-3
    # The whole store is covered, in store order (frame i is row i).
    last = np.arange(store.num_frames - 3, store.num_frames)
    online_last, (p_last, _, _), _ = online_and_cached(
        setup, out, last, combine=combine, weights=weights
    )
    assert (p_last - online_last).abs().max() < 1e-3
    # top_k=0 asks for the same dense cache.
    again = make_soft_targets(setup["store"], setup["members"], out, temperature=T, top_k=0,
                              combine=combine, weights=weights, progress=False)  # fmt: skip
    assert not again.built


def test_sparse_ce_error_shrinks_with_k(setup, tmp_path):
    store = FrameStore(setup["store"])
    frames = np.arange(store.num_frames)
    loss_err, frame_err, tails = {}, {}, {}
    for k in (1, 2, 3, 5, PDFS):
        out = tmp_path / f"k{k}"
        summary = make_soft_targets(setup["store"], setup["members"], out, temperature=T,
                                    top_k=k, progress=False)  # fmt: skip
        online, (probs, indices, tail), student = online_and_cached(setup, out, frames)
        if indices is None:  # k = P: dense
            indices = torch.arange(PDFS).expand(len(frames), PDFS)
        torch.testing.assert_close(tail, (1 - online.topk(k, -1).values.sum(-1)).clamp_min(0),
                                   atol=1e-5, rtol=0)  # fmt: skip
        assert abs(summary.mean_tail - float(tail.mean())) < 1e-5
        want = online_ce(student, online)  # (N,)
        got = sparse_ce(student, probs, indices, tail)  # (N,)
        loss_err[k] = abs(float(got.mean() - want.mean()))
        frame_err[k] = float((got - want).abs().mean())
        tails[k] = summary.mean_tail
        print(f"k={k}: loss {float(got.mean()):.5f} vs online {float(want.mean()):.5f} "
              f"(|err| {loss_err[k]:.2e}), mean per-frame |err| {frame_err[k]:.2e}, "
              f"mean tail mass {tails[k]:.4f}")  # fmt: skip
    # Per frame the uniform-tail approximation improves with every k; the batch loss's
    # error can cancel across frames, so it need not (on this toy k=2 beats k=3).
    assert frame_err[1] > frame_err[2] > frame_err[3] > frame_err[5] > frame_err[PDFS]
    assert tails[1] > tails[2] > tails[3] > tails[5] > tails[PDFS]
    assert min(loss_err[k] for k in (1, 2, 3)) > 1e-3  # a visible approximation at small k
    assert frame_err[2] > 1e-2
    assert loss_err[PDFS] < 1e-3 and frame_err[PDFS] < 1e-3


@pytest.mark.parametrize("k", [-1, PDFS + 1])
def test_top_k_must_be_in_range(setup, tmp_path, k):
    with pytest.raises(ValueError, match="top_k"):
        make_soft_targets(setup["store"], setup["members"], tmp_path / "soft", temperature=T,
                          top_k=k, progress=False)  # fmt: skip
    assert not (tmp_path / "soft" / ".done").exists()


def test_mismatches_are_refused(setup, tmp_path):
    out = tmp_path / "soft"
    make_soft_targets(setup["store"], setup["members"], out, temperature=T, top_k=3,
                      progress=False)  # fmt: skip
    cache = SoftTargetCache(out)
    store = FrameStore(setup["store"])
    cache.check(store, temperature=T, model_paths=setup["members"][::-1], top_k=3)
    cache.check(store.subset(0.25, seed=1), temperature=T)  # a view of the same store
    with pytest.raises(InputError, match="feats_sha256") as e:
        cache.check(FrameStore(setup["other_store"]), temperature=T)
    assert e.value.path.endswith("meta.json")
    with pytest.raises(InputError, match="temperature") as e:
        cache.check(store, temperature=1.0)
    assert e.value.path.endswith("meta.json")
    with pytest.raises(InputError, match="teachers") as e:
        cache.check(store, temperature=T, model_paths=[*setup["members"][:2], setup["student"]])
    assert e.value.path.endswith("meta.json")
    with pytest.raises(InputError, match="top-3"):
        cache.check(store, temperature=T, top_k=4)
    # Re-running a finished cache with another request needs --force.
    for kw in ({"temperature": 5.0, "top_k": 3}, {"temperature": T, "top_k": 4}):
        with pytest.raises(InputError, match="--force") as e:
            make_soft_targets(setup["store"], setup["members"], out, progress=False, **kw)
        assert e.value.path.endswith("meta.json")
    with pytest.raises(InputError, match="teachers"):
        make_soft_targets(setup["store"], setup["members"][:2], out, temperature=T, top_k=3,
                          progress=False)  # fmt: skip
    with pytest.raises(InputError, match="feats_sha256"):
        make_soft_targets(setup["other_store"], setup["members"], out, temperature=T, top_k=3,
                          progress=False)  # fmt: skip
    summary = make_soft_targets(setup["store"], setup["members"], out, temperature=5.0,
                                top_k=3, force=True, progress=False)  # fmt: skip
    assert summary.built and SoftTargetCache(out).temperature == 5.0


def test_killed_run_leaves_no_done_and_rerun_redoes_it(setup, tmp_path, monkeypatch):
    out = tmp_path / "soft"
    calls = []
    original = Ensemble.probs

    def dies_on_second_batch(self, inputs, temperature=1.0):
        calls.append(len(inputs))
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a Ctrl-C in the middle of the run
        return original(self, inputs, temperature)

    monkeypatch.setattr(Ensemble, "probs", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        make_soft_targets(setup["store"], setup["members"], out, temperature=T, top_k=2,
                          batch_size=50, progress=False)  # fmt: skip
    monkeypatch.setattr(Ensemble, "probs", original)
    assert not (out / ".done").exists() and not (out / "probs.npy").exists()
    assert not list(out.glob(".*.tmp"))  # temp files are cleaned up
    with pytest.raises(InputError, match=r"\.done"):
        SoftTargetCache(out)
    summary = make_soft_targets(setup["store"], setup["members"], out, temperature=T, top_k=2,
                                batch_size=50, progress=False)  # fmt: skip
    assert summary.built
    SoftTargetCache(out).check(FrameStore(setup["store"]), temperature=T)

    # A run killed after writing its arrays (no .done) is refused and redone.
    (out / ".done").unlink()
    (out / ".probs.npy.stale.tmp").write_bytes(b"left by a SIGKILL")
    with pytest.raises(InputError, match="incomplete"):
        SoftTargetCache(out)
    before = np.load(out / "probs.npy").copy()
    summary = make_soft_targets(setup["store"], setup["members"], out, temperature=T, top_k=2,
                                progress=False)  # fmt: skip
    assert summary.built and (out / ".done").exists()
    assert not (out / ".probs.npy.stale.tmp").exists()
    np.testing.assert_array_equal(np.load(out / "probs.npy"), before)


def test_rerun_is_a_noop(setup, tmp_path):
    out = tmp_path / "soft"
    first = make_soft_targets(setup["store"], setup["members"], out, temperature=T, top_k=3,
                              progress=False)  # fmt: skip
    stat = (out / "probs.npy").stat()
    again = make_soft_targets(setup["store"], setup["members"][::-1], out, temperature=T,
                              top_k=3, progress=False)  # fmt: skip
    assert first.built and not again.built
    assert again.num_frames == first.num_frames and again.mean_tail == first.mean_tail
    after = (out / "probs.npy").stat()
    assert (after.st_ino, after.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="asr-distill")
    soft_target_cmds.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_round_trip(setup, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "soft_cli"
    teachers = [a for m in setup["members"] for a in ("--teacher", str(m))]
    argv = ["make-soft-targets", str(setup["store"]), str(out), *teachers,
            "--temperature", "2", "--top-k", "3", "--combine", "geometric",
            "--weights", "1", "1", "2", "--batch-size", "64", "--no-progress"]  # fmt: skip
    assert run_cli(argv) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["combine"] == "geometric" and meta["top_k"] == 3 and meta["temperature"] == 2.0
    np.testing.assert_allclose(meta["weights"], [0.25, 0.25, 0.5])
    assert [m["path"] for m in meta["members"]] == [str(m.resolve()) for m in setup["members"]]
    assert meta["feats_sha256"] == FrameStore(setup["store"]).meta["feats_sha256"]
    assert "mean tail mass" in (out / "log" / "make-soft-targets.log").read_text()

    lib = tmp_path / "soft_lib"
    make_soft_targets(setup["store"], setup["members"], lib, temperature=2.0, top_k=3,
                      combine="geometric", weights=[1, 1, 2], progress=False)  # fmt: skip
    for name in ("probs.npy", "indices.npy", "tail.npy"):
        np.testing.assert_array_equal(np.load(out / name), np.load(lib / name))
    assert run_cli(argv) == 0  # finished: a no-op
    with pytest.raises(InputError, match=r"bad option.*top_k"):
        run_cli(
            [*argv[:2], str(tmp_path / "bad"), *teachers, "--temperature", "2", "--top-k", "-1"]
        )


def test_out_of_range_pdf_ids_in_a_damaged_cache_are_refused_on_open(setup, tmp_path):
    out = tmp_path / "soft"
    make_soft_targets(setup["store"], setup["members"], out, temperature=T, top_k=3,
                      progress=False)  # fmt: skip
    idx = np.load(out / "indices.npy", mmap_mode="r+")
    idx[5, 1] = 10_000
    idx.flush()
    del idx
    with pytest.raises(InputError, match=r"indices\.npy: pdf-ids 0\.\.10000 outside"):
        SoftTargetCache(out)


def test_distill_refuses_a_cache_of_another_combination(setup, tmp_path):
    """--soft-targets with another combine or weighting than the cache's: refused, never
    the cache's distribution silently."""
    from asr_distill.nnet.distill import DistillConfig, DistillObjective

    out = tmp_path / "soft"
    make_soft_targets(setup["store"], setup["members"], out, temperature=T, top_k=3,
                      combine="geometric", progress=False)  # fmt: skip
    store = FrameStore(setup["store"])
    ok = DistillConfig(soft_targets=str(out), temperature=T, combine="geometric")
    DistillObjective(ok, store)
    with pytest.raises(InputError, match="geometric mean, training asks for arithmetic"):
        DistillObjective(DistillConfig(soft_targets=str(out), temperature=T), store)
    with pytest.raises(InputError, match="uniformly, training asks for accuracy"):
        conf = DistillConfig(soft_targets=str(out), temperature=T, combine="geometric",
                             weighting="accuracy")  # fmt: skip
        DistillObjective(conf, store)


@pytest.mark.parametrize("top_k", [0, 3])
def test_masked_views_hold_the_ensembles_distribution_of_the_masked_windows(setup, tmp_path,
                                                                             top_k):  # fmt: skip
    """Each view's rows are the online ensemble's distribution of the windows under that
    view's bands; the views' bands differ, and a request for other views is refused."""
    from asr_distill.nnet.augment import mask_bands

    out = tmp_path / "soft"
    make_soft_targets(setup["store"], setup["members"], out, temperature=T, top_k=top_k,
                      views=3, freq_mask=2, mask_seed=7, batch_size=50,
                      progress=False)  # fmt: skip
    cache = SoftTargetCache(out)
    store = FrameStore(setup["store"])
    frames = np.arange(cache.num_frames)
    batch = store.gather(frames, left=LEFT, right=RIGHT)
    ensemble = Ensemble.load(setup["members"])
    assert cache.masked and cache.views == 3 and cache.freq_mask == 2
    bands = []
    for v in range(3):
        start, width = cache.bands(frames, v)
        assert int(width.max()) == 2 and int(width.min()) == 0 and int((start + width).max()) <= DIM
        bands.append(torch.stack([start, width]))
        online = ensemble.log_probs(mask_bands(batch.inputs, DIM, start, width), T).exp()
        probs, idx, _ = cache.gather(frames, v)
        if idx is not None:  # top-k: compare the kept probabilities
            online = online.gather(1, idx)
        np.testing.assert_allclose(probs.numpy(), online.numpy(), atol=1e-3)
    assert not torch.equal(bands[0], bands[1]) and not torch.equal(bands[1], bands[2])
    with pytest.raises(IndexError, match="view 3 out of range"):
        cache.gather(frames[:2], 3)
    with pytest.raises(InputError, match=r"views, freq_mask, mask_seed \(3, 2, 8\) now"):
        make_soft_targets(setup["store"], setup["members"], out, temperature=T, top_k=top_k,
                          views=3, freq_mask=2, mask_seed=8, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="more than one view only with masks"):
        make_soft_targets(setup["store"], setup["members"], tmp_path / "x", temperature=T,
                          top_k=top_k, views=2, progress=False)  # fmt: skip


def test_a_student_of_masked_views_sees_its_windows_under_the_views_bands(setup, tmp_path):
    """Epoch e reads view e mod V: the student's input is the batch under that view's
    bands, its soft targets that view's rows; the trainer's own masks are refused."""
    from asr_distill.nnet import losses
    from asr_distill.nnet.augment import mask_bands
    from asr_distill.nnet.distill import DistillConfig, DistillObjective

    out = tmp_path / "soft"
    make_soft_targets(setup["store"], setup["members"], out, temperature=T, top_k=0,
                      views=2, freq_mask=3, progress=False)  # fmt: skip
    store = FrameStore(setup["store"])
    cache = SoftTargetCache(out)
    config = DistillConfig(soft_targets=str(out), temperature=T)
    objective = DistillObjective(config, store)
    student = SpliceDnn.load(setup["student"])
    seen = []
    hook = student.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    batch = store.gather(np.arange(5, 37), left=LEFT, right=RIGHT)
    for epoch in range(4):
        view = epoch % 2
        loss, _, _ = objective.loss(student, batch, torch.device("cpu"), epoch)
        start, width = cache.bands(batch.frames, view)
        x = mask_bands(batch.inputs, DIM, start, width)
        assert torch.equal(seen[-1], x)
        probs, _, _ = cache.gather(batch.frames, view)
        want = losses.distillation_loss(
            student(x), batch.targets, teacher_log_probs=probs.log(), temperature=T,
            soft_weight=1.0, hard_weight=0.5,
        ).total  # fmt: skip
        torch.testing.assert_close(loss, want)
    hook.remove()
    assert not torch.equal(seen[0], seen[2])  # (seen: the objective's, then ours, per epoch)
    with pytest.raises(InputError, match=r"masked views.*without --freq-mask"):
        DistillObjective(config, store, perturbed=True)
