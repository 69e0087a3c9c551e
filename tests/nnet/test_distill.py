"""Teacher ensembles and every distillation method, end to end on a learnable toy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from asr_distill.cli import main
from asr_distill.features.framestore import FrameStore
from asr_distill.features.framestore_build import build_frame_store
from asr_distill.nnet.curve import best_dev_frame_acc
from asr_distill.nnet.distill import DistillConfig, DistillObjective
from asr_distill.nnet.ensemble import Ensemble
from asr_distill.nnet.model import SpliceDnn
from tests.nnet.test_train import PDFS, learnable_utts

TINY = ["--hidden-layers", "2", "--hidden-dim", "32", "--left-context", "2", "--right-context",
        "2", "--batch-size", "64", "--lr", "0.05", "--schedule", "constant", "--no-progress",
        "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """Labelled train/dev stores, an unlabelled copy of train, and a 3-member ensemble."""
    root = tmp_path_factory.mktemp("distill")
    for name, n, seed in (("train", 40, 0), ("dev", 10, 1)):
        feats, targets = learnable_utts(n, seed)
        build_frame_store(root / name, feats, targets=targets, num_pdfs=PDFS)
        if name == "train":
            build_frame_store(root / "unlabelled", feats, num_pdfs=PDFS)
    assert main(["train-ensemble", "--members", "3", "--epochs", "3", *TINY,
                 str(root / "train"), str(root / "dev"), str(root / "ens")]) == 0  # fmt: skip
    return root


def teachers(root: Path) -> list[str]:
    return (root / "ens" / "members.txt").read_text().split()


def best_dev_acc(exp: Path) -> float:
    return best_dev_frame_acc(exp)[0]


def test_members_differ_in_seed_and_ensemble_beats_mean_member(toy, capsys):
    paths = teachers(toy)
    assert len(paths) == 3
    w = [SpliceDnn.load(p).hidden[0].weight for p in paths]
    assert not torch.equal(w[0], w[1])
    seeds = [yaml.safe_load((Path(p).parent / "config.yaml").read_text())["seed"] for p in paths]
    assert seeds == [1, 2, 3]
    out = toy / "ens" / "accuracy.yaml"
    args = ["ensemble-accuracy", str(out), str(toy / "dev")]
    assert main([*args, *[a for p in paths for a in ("--teacher", p)]]) == 0
    acc = yaml.safe_load(out.read_text())["stores"][str(toy / "dev")]
    assert acc["ensemble"] >= np.mean(acc["members"])
    assert acc["ensemble"] > 80.0


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("kd", ["--temperature", "2"]),
        ("logits", []),
        ("fitnets", ["--hint-epochs", "1"]),
        ("self", ["--temperature", "2"]),
    ],
)
def test_each_method_trains_a_student(toy, tmp_path, method, extra):
    exp = tmp_path / method
    args = ["distill", "--method", method, "--epochs", "3", *TINY, *extra]
    if method != "self":
        # No hard-label term: what the student learns, it learns from the teachers.
        args += ["--hard-weight", "0", *[a for p in teachers(toy) for a in ("--teacher", p)]]
    assert main([*args, str(toy / "train"), str(toy / "dev"), str(exp)]) == 0
    assert best_dev_acc(exp) > 70.0  # chance is 20 %
    assert yaml.safe_load((exp / "distill.yaml").read_text())["method"] == method
    student = SpliceDnn.load(exp / "final")  # the student alone: no heads or regressor
    assert set(student.state_dict()) == set(SpliceDnn.load(teachers(toy)[0]).state_dict())
    if method == "self":
        # Self-distillation has no teacher but the labels: its heads' term must change
        # the training, so the same run with that term weighted 0 gives other weights.
        plain = tmp_path / "plain"
        assert main([*args, "--self-weight", "0", str(toy / "train"), str(toy / "dev"),
                     str(plain)]) == 0  # fmt: skip
        other = SpliceDnn.load(plain / "final")
        assert not torch.equal(student.hidden[0].weight, other.hidden[0].weight)


def test_unlabelled_transfer_set_trains_on_soft_targets_alone(toy, tmp_path):
    exp = tmp_path / "unlabelled"
    args = ["distill", "--epochs", "3", *TINY, "--temperature", "2",
            *[a for p in teachers(toy) for a in ("--teacher", p)]]  # fmt: skip
    assert main([*args, str(toy / "unlabelled"), str(toy / "dev"), str(exp)]) == 0
    assert best_dev_acc(exp) > 70.0
    # No labelled frame to count priors from: the student takes its teachers' (the
    # ensemble's) priors for hybrid decoding, never a silent uniform prior.
    want = torch.stack([SpliceDnn.load(p).log_priors.exp() for p in teachers(toy)]).mean(0)
    got = SpliceDnn.load(exp / "final").log_priors.exp()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert float(want.max() - want.min()) > 0.01  # not uniform: the toy's pdfs differ in count


def test_unlabelled_student_from_cache_alone_takes_cached_teachers_priors(toy, tmp_path):
    cache = tmp_path / "cache"
    t_args = [a for p in teachers(toy) for a in ("--teacher", p)]
    assert main(["make-soft-targets", *t_args, "--temperature", "2", "--top-k", "3",
                 str(toy / "unlabelled"), str(cache)]) == 0  # fmt: skip
    exp = tmp_path / "student"
    args = ["distill", "--epochs", "1", *TINY, "--temperature", "2", "--soft-targets", str(cache)]
    assert main([*args, str(toy / "unlabelled"), str(toy / "dev"), str(exp)]) == 0
    want = torch.stack([SpliceDnn.load(p).log_priors.exp() for p in teachers(toy)]).mean(0)
    torch.testing.assert_close(SpliceDnn.load(exp / "final").log_priors.exp(), want,
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_distill_from_cache_matches_online(toy, tmp_path):
    cache = tmp_path / "cache"
    t_args = [a for p in teachers(toy) for a in ("--teacher", p)]
    assert main(["make-soft-targets", *t_args, "--temperature", "2", "--top-k", str(PDFS),
                 str(toy / "train"), str(cache)]) == 0  # fmt: skip
    runs = {}
    for name, src in (("online", t_args), ("cached", ["--soft-targets", str(cache)])):
        exp = tmp_path / name
        args = ["distill", "--epochs", "1", *TINY, "--temperature", "2", *src]
        assert main([*args, str(toy / "train"), str(toy / "dev"), str(exp)]) == 0
        runs[name] = SpliceDnn.load(exp / "final").state_dict()
    # Same seed, same batches, same loss up to fp16 storage of the cached probabilities.
    for k in runs["online"]:
        torch.testing.assert_close(runs["online"][k], runs["cached"][k], rtol=0, atol=2e-3)
    # A cache made at another temperature is refused.
    args = ["distill", "--epochs", "1", *TINY, "--temperature", "5", "--soft-targets",
            str(cache), str(toy / "train"), str(toy / "dev"), str(tmp_path / "bad")]  # fmt: skip
    assert main(args) == 1


def test_pseudo_labels_are_the_teachers_argmax(toy, tmp_path):
    """The hard pseudo-label control: CE with the ensemble's argmax, online or from a
    (sorted top-k or dense) cache, and a student trains on it."""
    paths = teachers(toy)
    store = FrameStore(toy / "unlabelled")
    student = SpliceDnn.load(paths[0])
    c = student.config
    batch = next(store.batches(64, left=c.left_context, right=c.right_context, shuffle=False))
    argmax = Ensemble.load(paths).log_probs(batch.inputs).argmax(-1)  # (B,)
    sources = [{"teachers": paths}]
    for k in (2, 0):
        cache = tmp_path / f"cache{k}"
        assert main(["make-soft-targets", *[a for p in paths for a in ("--teacher", p)],
                     "--temperature", "5", "--top-k", str(k), str(toy / "unlabelled"),
                     str(cache)]) == 0  # fmt: skip
        sources.append({"soft_targets": str(cache)})
    for source in sources:
        objective = DistillObjective(
            DistillConfig(temperature=5, pseudo_labels=True, **source), store
        )
        objective.setup(student, torch.device("cpu"))
        loss, logits, _ = objective.loss(student, batch, torch.device("cpu"), 0)
        want = torch.nn.functional.cross_entropy(logits, argmax)  # no labels: no hard term
        torch.testing.assert_close(loss, want)
    exp = tmp_path / "pseudo"
    args = ["distill", "--epochs", "3", *TINY, "--pseudo-labels", "--soft-targets",
            str(tmp_path / "cache0"), "--temperature", "5"]  # fmt: skip
    assert main([*args, str(toy / "unlabelled"), str(toy / "dev"), str(exp)]) == 0
    assert best_dev_acc(exp) > 70.0
    assert yaml.safe_load((exp / "distill.yaml").read_text())["pseudo_labels"] is True


def test_perturbed_views_are_what_the_teachers_label(toy, tmp_path):
    """With --mixup-alpha (the objective) and --freq-mask (the trainer) the student and
    the online teachers see the same perturbed windows, fresh each step, and a student
    trains on them; a baseline trains with --freq-mask too."""
    paths = teachers(toy)
    store = FrameStore(toy / "train")
    student = SpliceDnn.load(paths[0])
    c = student.config
    batch = next(store.batches(64, left=c.left_context, right=c.right_context, shuffle=False))
    objective = DistillObjective(DistillConfig(teachers=paths, temperature=2, mixup_alpha=0.4),
                                 store)  # fmt: skip
    objective.setup(student, torch.device("cpu"))
    seen = {}
    student_forward, teacher_probs = student.forward, objective.teachers.probs
    student.forward = lambda x, **kw: seen.setdefault("student", x) is None or \
        student_forward(x, **kw)  # fmt: skip
    objective.teachers.probs = lambda x, t: seen.setdefault("teachers", x) is None or \
        teacher_probs(x, t)  # fmt: skip
    objective.loss(student, batch, torch.device("cpu"), 0)
    assert seen["student"] is seen["teachers"]
    assert not torch.equal(seen["student"], batch.inputs)
    exp = tmp_path / "augmented"
    args = ["distill", "--epochs", "3", *TINY, "--temperature", "2", "--mixup-alpha", "0.4",
            "--freq-mask", "3", *[a for p in paths for a in ("--teacher", p)]]  # fmt: skip
    assert main([*args, str(toy / "train"), str(toy / "dev"), str(exp)]) == 0
    assert best_dev_acc(exp) > 70.0
    assert main([*args, "--soft-targets", str(tmp_path / "none"), str(toy / "train"),
                 str(toy / "dev"), str(tmp_path / "refused")]) == 1  # fmt: skip
    base = ["train-dnn", "--epochs", "3", *TINY, "--freq-mask", "3"]
    assert main([*base, str(toy / "train"), str(toy / "dev"), str(tmp_path / "masked")]) == 0
    assert best_dev_acc(tmp_path / "masked") > 70.0


def test_distill_resume_with_other_teachers_or_temperature_is_refused(toy, tmp_path):
    exp = tmp_path / "student"
    paths = teachers(toy)
    args = ["distill", "--epochs", "2", *TINY, "--temperature", "2"]
    data = [str(toy / "train"), str(toy / "dev"), str(exp)]
    assert main([*args, *[a for p in paths for a in ("--teacher", p)], *data]) == 0
    (exp / ".done").unlink()  # as if killed before the end
    recorded = (exp / "distill.yaml").read_text()
    other_t = [*args[:-1], "5", *[a for p in paths for a in ("--teacher", p)], *data]
    assert main(other_t) == 1
    assert main([*args, "--teacher", paths[0], *data]) == 1  # another ensemble
    assert (exp / "distill.yaml").read_text() == recorded  # still says what ran
    assert main([*args, *[a for p in paths for a in ("--teacher", p)], *data]) == 0
    assert (exp / ".done").is_file()


def test_fitnets_under_torchrun_with_two_processes(toy, tmp_path):
    """The hint stage leaves the student's top layers without gradient: DDP must be told
    (find_unused_parameters), or it fails at the second step."""
    import os
    import subprocess
    import sys

    exp = tmp_path / "fitnets"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--standalone"]  # fmt: skip
    args = ["-m", "asr_distill", "distill", "--method", "fitnets", "--hint-epochs", "1",
            "--epochs", "2", *TINY, *[a for p in teachers(toy) for a in ("--teacher", p)],
            str(toy / "train"), str(toy / "dev"), str(exp)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([*torchrun, *args], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 process(es)" in (exp / "log" / "train.log").read_text()
    assert (exp / ".done").is_file()


@pytest.mark.parametrize("shared_input", [True, False])
def test_stacked_ensemble_equals_each_member_run_alone(shared_input):
    """The members run as one batched matmul per layer give each member's own logits,
    with one input normalisation or one per member; members of other shapes keep the
    loop and give the same."""
    from asr_distill.nnet.model import DnnConfig

    torch.manual_seed(0)
    conf = DnnConfig(num_pdfs=7, feat_dim=3, left_context=2, right_context=1,
                     hidden_layers=3, hidden_dim=16)  # fmt: skip
    members = [SpliceDnn(conf) for _ in range(4)]
    for i, m in enumerate(members):
        shift = 0.0 if shared_input else float(i)
        m.set_input_stats(np.full(3, 0.5 + shift), np.full(3, 2.0 + shift))
        m.set_priors(np.arange(1, 8) + i)
    ens = Ensemble(members)
    assert ens.stacked and ens.shared_input == shared_input
    x = torch.randn(9, conf.input_dim)
    want = torch.stack([m(x) for m in members]).detach()  # (M, B, P)
    torch.testing.assert_close(ens(x), want, rtol=1e-5, atol=1e-5)
    mixed = Ensemble([*members[:2], SpliceDnn(dataclasses.replace(conf, hidden_dim=8))])
    assert not mixed.stacked
    torch.testing.assert_close(mixed(x)[:2], want[:2])


def test_a_finished_ensemble_grows_when_asked_for_more_members(toy, tmp_path):
    """train-ensemble again with the same settings is a no-op; with --members 4 it trains
    the missing member only and lists all four."""
    ens = tmp_path / "ens"
    args = ["train-ensemble", "--epochs", "1", *TINY, str(toy / "train"), str(toy / "dev")]
    assert main([*args, "--members", "2", str(ens)]) == 0
    stamp = (ens / "member0" / "final.safetensors").stat().st_mtime_ns
    assert main([*args, "--members", "2", str(ens)]) == 0
    assert main([*args, "--members", "3", str(ens)]) == 0
    assert len((ens / "members.txt").read_text().split()) == 3
    assert (ens / "member2" / ".done").is_file()
    assert (ens / "member0" / "final.safetensors").stat().st_mtime_ns == stamp


def test_curve_summary_prints_each_run_and_fails_for_a_missing_curve(toy, capsys):
    assert main(["curve-summary", str(toy / "ens" / "member0")]) == 0
    assert "member0" in capsys.readouterr().out
    assert main(["curve-summary", str(toy / "ens" / "member0"), str(toy / "nothing")]) == 1
    assert "nothing" in capsys.readouterr().out
