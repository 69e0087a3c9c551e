"""DNN model and trainer: learning, files, resume after SIGKILL, DDP == one process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_distill.features.framestore import FrameStore
from asr_distill.features.framestore_build import build_frame_store
from asr_distill.nnet import train as train_module
from asr_distill.nnet.curve import best_dev_frame_acc, read_train_curve
from asr_distill.nnet.model import DnnConfig, SpliceDnn
from asr_distill.nnet.schedule import ScheduleState, end_of_epoch
from asr_distill.nnet.train import Objective, TrainConfig, _make_optimizer, train_dnn

DIM, PDFS = 6, 5


def learnable_utts(n_utts: int, seed: int) -> tuple[dict, dict]:
    """Features whose previous frame's first dims decide the centre frame's pdf, so a
    model needs its left context to classify well."""
    rng = np.random.default_rng(seed)
    feats, targets = {}, {}
    for i in range(n_utts):
        t = int(rng.integers(30, 60))
        labels = rng.integers(0, PDFS, t)
        x = rng.normal(0, 1, (t, DIM)).astype(np.float32)
        x[1:, :PDFS] += 3.0 * np.eye(PDFS, dtype=np.float32)[labels[1:]]  # frame t+1 says y_t
        feats[f"u{i:03d}"] = np.roll(x, -1, axis=0)
        targets[f"u{i:03d}"] = labels.astype(np.int32)
    return feats, targets


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("stores")
    for name, n, seed in (("train", 40, 0), ("dev", 10, 1)):
        feats, targets = learnable_utts(n, seed)
        build_frame_store(root / name, feats, targets=targets, num_pdfs=PDFS)
    return root / "train", root / "dev"


TINY = dict(hidden_layers=2, hidden_dim=32, left_context=2, right_context=2, batch_size=64,
            lr=0.05, epochs=4, schedule="constant", checkpoint_every=5)  # fmt: skip


def test_paper_model_size():
    conf = DnnConfig(num_pdfs=14000)
    assert conf.window == 26 and conf.input_dim == 1040
    assert 84e6 < conf.num_params() < 86e6  # "about 85M parameters"
    small = SpliceDnn(DnnConfig(num_pdfs=7, feat_dim=3, hidden_layers=2, hidden_dim=4,
                                left_context=1, right_context=1))  # fmt: skip
    n = sum(p.numel() for p in small.parameters())
    assert n == small.config.num_params()


def test_forward_hidden_priors_and_round_trip(tmp_path):
    model = SpliceDnn(DnnConfig(num_pdfs=4, feat_dim=2, hidden_layers=3, hidden_dim=8,
                                left_context=1, right_context=0))  # fmt: skip
    model.set_input_stats(np.array([1.0, -1.0]), np.array([2.0, 0.5]))
    np.testing.assert_allclose(model.input_mean.numpy(), [1, -1, 1, -1])
    np.testing.assert_allclose(model.input_inv_std.numpy(), [0.5, 2, 0.5, 2])
    model.set_priors(np.array([10, 30, 0, 60]))
    p = np.exp(model.log_priors.numpy())
    np.testing.assert_allclose(p, [0.1, 0.3, 0.0, 0.6], rtol=1e-6)
    x = torch.randn(5, 4)
    logits, hidden = model(x, return_hidden=True)
    assert logits.shape == (5, 4) and [h.shape for h in hidden] == [(5, 8)] * 3
    ll = model.log_likelihoods(x)
    want = torch.log_softmax(logits, -1) - torch.log(torch.tensor([0.1, 0.3, 1.0, 0.6]))
    torch.testing.assert_close(ll[:, [0, 1, 3]], want[:, [0, 1, 3]])
    # A pdf never seen in training is never chosen (not boosted by a tiny prior).
    assert (ll[:, 2] == -1e10).all()
    model.save(tmp_path / "m")
    again = SpliceDnn.load(tmp_path / "m")
    torch.testing.assert_close(again(x), model(x))
    (tmp_path / "m.yaml").write_text("num_pdfs: 5\nfeat_dim: 2\n")
    with pytest.raises(ValueError, match=r"m\.safetensors"):
        SpliceDnn.load(tmp_path / "m")


def test_newbob_schedule():
    conf = TrainConfig(schedule="newbob", lr=1.0, newbob_start_halving=0.5, newbob_end=0.1)
    st = ScheduleState(lr=1.0)
    assert end_of_epoch(conf, st, 0, 50.0) and st.lr == 1.0
    assert end_of_epoch(conf, st, 1, 55.0) and st.lr == 1.0 and not st.halving
    end_of_epoch(conf, st, 2, 55.3)  # gain 0.3 < 0.5: start halving
    assert st.halving and st.lr == 0.5 and not st.stop
    end_of_epoch(conf, st, 3, 55.35)  # gain 0.05 < 0.1 while halving: stop
    assert st.stop and st.lr == 0.25 and st.best_epoch == 3


def test_training_learns_and_writes_its_files(stores, tmp_path):
    train, dev = stores
    exp = tmp_path / "exp"
    model = train_dnn(train, dev, exp, TrainConfig(**TINY), progress=False)
    assert (exp / "train_curve.csv").read_text().startswith("epoch,step,lr,train_loss")
    dev_acc = [r["dev_frame_acc"] for r in read_train_curve(exp)]
    assert len(dev_acc) == 4 and max(dev_acc) > 80.0  # chance is 20 %
    for name in ("final.safetensors", "final.yaml", "last.safetensors", "config.yaml", ".done"):
        assert (exp / name).is_file(), name
    counts = np.bincount(np.load(train / "targets.npy"), minlength=PDFS)
    np.testing.assert_allclose(np.exp(model.log_priors.numpy()), counts / counts.sum(), rtol=1e-5)
    # A finished run is not redone.
    assert train_dnn(train, dev, exp, TrainConfig(**TINY), progress=False) is None


def test_dropout_only_while_training_and_kept_in_the_model(stores, tmp_path):
    train, dev = stores
    model = train_dnn(train, dev, tmp_path / "exp", TrainConfig(**TINY, dropout=0.3),
                      progress=False)  # fmt: skip
    assert model.config.dropout == 0.3  # saved with the model (final.yaml)
    x = torch.randn(16, model.config.input_dim)
    torch.testing.assert_close(model(x), model(x))  # eval mode: no dropout
    model.train()
    assert not torch.equal(model(x), model(x))
    assert best_dev_frame_acc(tmp_path / "exp")[0] > 80.0


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_native_bf16_warns_in_the_step_log(stores, tmp_path, monkeypatch,
                                                                 native):  # fmt: skip
    """Where oneDNN would emulate bf16 (no AMX, no AVX512-BF16), the run says so in its
    train.log, and still trains; with native bf16 it says nothing."""
    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: native)
    train, dev = stores
    exp = tmp_path / "exp"
    conf = TrainConfig(**{**TINY, "epochs": 1}, bf16=True, device="cpu")
    train_dnn(train, dev, exp, conf, progress=False)
    text = (exp / "log" / "train.log").read_text()
    assert ("probably emulated, slower than fp32" in text) is not native
    assert (exp / ".done").is_file()


def test_divergence_stops_with_a_clear_error(stores, tmp_path):
    """A learning rate that blows the loss up stops the run at the first non-finite loss,
    naming the run, instead of training on NaN to the end."""
    train, dev = stores
    conf = TrainConfig(**{**TINY, "lr": 1e30})
    with pytest.raises(FloatingPointError, match=r"exp.*lower the learning rate"):
        train_dnn(train, dev, tmp_path / "exp", conf, progress=False)
    assert not (tmp_path / "exp" / ".done").exists()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "asr_distill", "train-dnn", *args, "--no-progress",
            "--hidden-layers", "2", "--hidden-dim", "32", "--left-context", "2",
            "--right-context", "2", "--batch-size", "64", "--lr", "0.05", "--epochs", "4",
            "--schedule", "newbob", "--checkpoint-every", "3", "--device", "cpu"]  # fmt: skip


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def weights(exp: Path) -> dict[str, torch.Tensor]:
    return SpliceDnn.load(exp / "last").state_dict()


def test_sigkill_mid_epoch_then_rerun_equals_uninterrupted(stores, tmp_path):
    train, dev = map(str, stores)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(cli(train, dev, str(ref)), check=True, env=ENV, capture_output=True)
    proc = subprocess.Popen(cli(train, dev, str(killed)), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    ckpt = killed / "checkpoint.pt"
    deadline = time.time() + 60
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (killed / ".done").exists()
    resumed = torch.load(ckpt, weights_only=True)
    assert resumed["epoch"] == 0 and resumed["batch"] > 0  # killed mid-epoch
    out = subprocess.run(cli(train, dev, str(killed)), check=True, env=ENV, capture_output=True,
                         text=True)  # fmt: skip
    assert "resuming from" in out.stderr
    a, b = weights(ref), weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    drop_time = [{k: v for k, v in r.items() if k != "seconds"} for r in read_train_curve(ref)]
    assert drop_time == [{k: v for k, v in r.items() if k != "seconds"}
                         for r in read_train_curve(killed)]  # fmt: skip


def test_ddp_two_processes_match_one(stores, tmp_path):
    train, dev = map(str, stores)
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(cli(train, dev, str(one)), check=True, env=ENV, capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--standalone"]  # fmt: skip
    out = subprocess.run([*torchrun, *cli(train, dev, str(two))[1:]], env=ENV,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 process(es)" in (two / "log" / "train.log").read_text()
    a, b = weights(one), weights(two)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_resume_with_other_settings_or_data_is_refused(stores, tmp_path):
    """A killed run (checkpoint, no done marker) resumes only with the settings and
    stores it was started with; config.yaml keeps saying what ran; --force starts over."""
    from asr_distill.errors import InputError

    train, dev = stores
    exp = tmp_path / "exp"
    conf = TrainConfig(**{**TINY, "epochs": 2})
    train_dnn(train, dev, exp, conf, progress=False)
    (exp / ".done").unlink()  # as if killed before the end
    config_yaml = (exp / "config.yaml").read_text()
    with pytest.raises(InputError, match=r"other settings or data \(train_config\.lr: 0\.05 "):
        train_dnn(train, dev, exp, TrainConfig(**{**TINY, "epochs": 2, "lr": 0.01}),
                  progress=False)  # fmt: skip
    with pytest.raises(InputError, match=r"train_config\.seed: 0 then, 3 now"):
        train_dnn(train, dev, exp, TrainConfig(**{**TINY, "epochs": 2, "seed": 3}),
                  progress=False)  # fmt: skip
    with pytest.raises(InputError, match=r"dev_store\.path: .* then, .* now"):
        train_dnn(train, train, exp, conf, progress=False)
    assert (exp / "config.yaml").read_text() == config_yaml
    # A killed run's model is not a trained model: loading it is refused.
    with pytest.raises(InputError, match="has not finished"):
        SpliceDnn.load(exp / "final")
    # How often it checkpoints does not change the weights: that resume is allowed.
    train_dnn(train, dev, exp, TrainConfig(**{**TINY, "epochs": 2, "checkpoint_every": 7}),
              progress=False)  # fmt: skip
    assert (exp / ".done").is_file()
    SpliceDnn.load(exp / "final")
    train_dnn(train, dev, exp, TrainConfig(**{**TINY, "epochs": 2, "lr": 0.01}), force=True,
              progress=False)  # fmt: skip
    assert "lr: 0.01" in (exp / "config.yaml").read_text()
    # A checkpoint written before an option existed resumes: it ran with the default.
    from asr_distill.nnet.train import CHECKPOINT_FILE, check_resume, run_identity

    ckpt = torch.load(exp / CHECKPOINT_FILE, weights_only=True)
    del ckpt["identity"]["train_config"]["freq_mask"]
    now = run_identity(TrainConfig(**{**TINY, "epochs": 2, "lr": 0.01}), FrameStore(train),
                       FrameStore(dev), Objective())  # fmt: skip
    check_resume(ckpt, now, exp / CHECKPOINT_FILE)
    with pytest.raises(InputError, match="freq_mask: 0 then, 4 now"):
        check_resume(ckpt, run_identity(TrainConfig(**{**TINY, "epochs": 2, "lr": 0.01,
                                                       "freq_mask": 4}), FrameStore(train),
                                        FrameStore(dev), Objective()), exp)  # fmt: skip


def test_corrupt_or_truncated_weights_are_a_clear_error(tmp_path):
    from asr_distill.errors import InputError

    model = SpliceDnn(DnnConfig(num_pdfs=PDFS, feat_dim=DIM, left_context=1, right_context=1,
                                hidden_layers=1, hidden_dim=8))  # fmt: skip
    model.save(tmp_path / "m")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[: len(data) // 2])  # truncated copy
    with pytest.raises(InputError, match=r"m\.safetensors: unreadable weights"):
        SpliceDnn.load(tmp_path / "m")
    (tmp_path / "m.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(InputError, match="unreadable weights"):
        SpliceDnn.load(tmp_path / "m")


def test_nan_in_a_damaged_store_is_named_not_blamed_on_the_learning_rate(stores, tmp_path):
    import shutil

    from asr_distill.errors import InputError

    train, dev = stores
    bad = tmp_path / "train"
    shutil.copytree(train, bad)
    feats = np.load(bad / "feats.npy", mmap_mode="r+")
    feats[100:110] = np.nan  # damaged after the build (meta.json still agrees)
    feats.flush()
    del feats
    with pytest.raises(
        InputError,
        match=r"feats\.npy: non-finite features in 10 frame\(s\), the first 100 of utterance .u00",
    ):
        train_dnn(bad, dev, tmp_path / "exp", TrainConfig(**TINY), progress=False)


@pytest.mark.parametrize("restore", [True, False])
def test_newbob_rejected_epoch_restarts_from_the_best_weights(stores, tmp_path, monkeypatch,
                                                             restore, caplog):  # fmt: skip
    """Kaldi nnet1's newbob: an epoch worse on dev is rejected and the next starts from
    the best weights; with newbob_restore off it goes on from the rejected ones. The
    last epoch is never restored (last.* holds what the last epoch made)."""
    import asr_distill.nnet.train as train_mod

    accs = iter([50.0, 60.0, 55.0, 58.0])  # epochs 2 and 3 are worse than epoch 1
    monkeypatch.setattr(train_mod, "evaluate", lambda *a, **k: (1.0, next(accs)))
    saved = {}
    real_save = torch.save

    def spy(obj, f, *a, **k):  # the checkpoints at epoch ends
        if isinstance(obj, dict) and obj.get("batch") == 0:
            saved[obj["epoch"]] = {k: v.clone() for k, v in obj["model"].items()}
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", spy)
    train, dev = stores
    exp = tmp_path / "exp"
    caplog.set_level("INFO")
    conf = TrainConfig(**{**TINY, "epochs": 4, "schedule": "newbob", "newbob_restore": restore})
    train_dnn(train, dev, exp, conf, progress=False)
    best = SpliceDnn.load(exp / "final").state_dict()
    # Epoch 3 starts from what the checkpoint after epoch 2 holds.
    assert all(torch.equal(saved[3][k], best[k]) for k in best) == restore
    assert ("epoch 2 rejected" in caplog.text) == restore
    assert "epoch 3 rejected" not in caplog.text
    last = weights(exp)
    assert not all(torch.equal(last[k], best[k]) for k in best)


def test_init_starts_from_a_saved_model_and_is_part_of_the_run(stores, tmp_path):
    """--init: the run starts from the saved model's weights and normalisation (at a
    vanishing learning rate it ends with them), refuses a model of another shape, and a
    resume with other initial weights is refused."""
    from asr_distill.errors import InputError

    train, dev = stores
    first = train_dnn(train, dev, tmp_path / "a", TrainConfig(**{**TINY, "epochs": 1}),
                      progress=False)  # fmt: skip
    still = {**TINY, "epochs": 1, "lr": 1e-12, "momentum": 0.0, "schedule": "constant"}
    warm = train_dnn(
        train,
        dev,
        tmp_path / "b",
        TrainConfig(**still, init=str(tmp_path / "a" / "final")),
        progress=False,
    )
    for name, w in first.state_dict().items():
        torch.testing.assert_close(warm.state_dict()[name], w, rtol=0, atol=1e-6, msg=name)
    cold = train_dnn(train, dev, tmp_path / "c", TrainConfig(**still), progress=False)
    assert not torch.allclose(cold.hidden[0].weight, first.hidden[0].weight)
    assert best_dev_frame_acc(tmp_path / "b")[0] == pytest.approx(
        best_dev_frame_acc(tmp_path / "a")[0], abs=0.01)  # fmt: skip
    shape = r"a/final.yaml: the init model has another shape: hidden_dim 32 \(run: 16\)"
    with pytest.raises(InputError, match=shape):
        train_dnn(train, dev, tmp_path / "d", TrainConfig(**{**still, "hidden_dim": 16},
                  init=str(tmp_path / "a" / "final")), progress=False)  # fmt: skip
    # A killed warm-started run resumes only from the same initial weights.
    (tmp_path / "b" / ".done").unlink()
    train_dnn(train, dev, tmp_path / "a2", TrainConfig(**{**TINY, "epochs": 1, "seed": 5}),
              progress=False)  # fmt: skip
    (tmp_path / "a" / "final.safetensors").write_bytes(
        (tmp_path / "a2" / "final.safetensors").read_bytes())  # fmt: skip
    with pytest.raises(InputError, match="init_sha256"):
        train_dnn(train, dev, tmp_path / "b", TrainConfig(**still, init=str(tmp_path / "a" /
                                                                            "final")),
                  progress=False)  # fmt: skip


def test_fused_optimizer_only_on_cuda_and_where_every_parameter_steps_from_the_start():
    """torch's fused SGD fails once a parameter gets its first gradient after others
    (FitNets' hint stage), and aborted under DDP on a CPU: the trainer asks for it on
    CUDA, for objectives whose every parameter has a gradient from the first step."""

    def fused(device: str, every_step: bool = True, flag: bool = True) -> bool:
        params = [torch.nn.Parameter(torch.zeros(2))]
        opt = _make_optimizer(TrainConfig(fused_optimizer=flag), params, torch.device(device),
                              all_params_every_step=every_step)  # fmt: skip
        return bool(opt.defaults.get("fused"))

    assert fused("cuda")
    assert not fused("cuda", every_step=False)
    assert not fused("cuda", flag=False)
    assert not fused("cpu")
