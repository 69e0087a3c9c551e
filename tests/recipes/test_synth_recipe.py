"""End-to-end runs of recipes/synth/run.sh at the tiny preset: every stage from the
synthetic corpus to the report; a second run in another work dir, side by side with
the first (each is the other's load), must give the same alignments and tables; a
re-run must do nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.recipes import RECIPE_MARKS, REPO

RECIPE = REPO / "recipes" / "synth" / "run.sh"

pytestmark = RECIPE_MARKS


def _command(work: Path, *args: str) -> list[str]:
    return ["bash", str(RECIPE), "--preset", "tiny", "--nj", "2", "--work-dir", str(work), *args]


def run(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(work, *args), capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path, str]:
    """Two full tiny runs started together; returns their work dirs and run A's log."""
    root = tmp_path_factory.mktemp("synth")
    works = [root / "a", root / "b"]
    logs = [root / "a.log", root / "b.log"]
    # One thread each: two runs of 2-thread torch ops on 2 cores spin against each other.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    procs = []
    for work, log in zip(works, logs, strict=True):
        with open(log, "w") as f:
            procs.append(subprocess.Popen(_command(work), stdout=f, stderr=subprocess.STDOUT,
                                          env=env))  # fmt: skip
    codes = [p.wait() for p in procs]
    for code, log in zip(codes, logs, strict=True):
        assert code == 0, log.read_text()[-4000:]
    return works[0], works[1], logs[0].read_text()


def test_tiny_recipe_end_to_end_and_rerun_is_a_noop(two_runs):
    work, _, stderr = two_runs
    for stage in range(21):
        assert f"Stage {stage}:" in stderr, f"stage {stage} did not run"
    report = (work / "report" / "report.md").read_text()
    for section in ("## Table 1", "## Temperature sweep", "## Table 5", "claims, checked",
                    "## Generalist and specialists"):  # fmt: skip
        assert section in report
    assert "Not measured" not in report  # every input of the report was produced
    for png in ("temperature.png", "table5_dev_curve.png"):
        assert (work / "report" / png).stat().st_size > 1000
    exp = work / "exp"
    for m in ("mono", "tri1", "tri2b", "tri3b"):  # the tiny preset's gmm_targets: tri3b
        assert (exp / m / "decode_test" / "best_wer").is_file(), m
    assert "## GMM-HMM systems" in report
    assert len((exp / "ensemble" / "members.txt").read_text().split()) == 3
    # A second run finds every step done: nothing is retrained or re-decoded.
    stamp = (exp / "dnn" / "final.safetensors").stat().st_mtime_ns
    again = run(work, "--stage", "5")
    assert again.returncode == 0, again.stderr[-4000:]
    assert (exp / "dnn" / "final.safetensors").stat().st_mtime_ns == stamp
    assert again.stderr.count("nothing to do") >= 20


def step_dirs(exp: Path) -> list[Path]:
    """The output dirs of steps under a recipe's exp dir: its children, graphs, decode
    dirs, ensemble members and anything holding a done marker."""
    found = {d for d in exp.iterdir() if d.is_dir()}
    for d in exp.rglob("*"):
        if d.is_dir() and d.name != "log" and (
            (d / ".done").is_file() or d.name == "graph" or d.name.startswith(("decode_",
                                                                                "member"))
        ):  # fmt: skip
            found.add(d)
    return sorted(found)


def test_every_step_dir_has_the_same_layout(two_runs):
    """One lifecycle for every step: log/<step>.log, the resolved config.yaml, .done."""
    exp = two_runs[0] / "exp"
    dirs = step_dirs(exp)
    assert len(dirs) > 30
    for d in dirs:
        rel = d.relative_to(exp)
        assert (d / ".done").is_file(), f"{rel}: no done marker"
        assert (d / "config.yaml").is_file(), f"{rel}: no config.yaml"
        assert list((d / "log").glob("*.log")), f"{rel}: no log/*.log"


def test_two_runs_give_identical_alignments_models_and_tables(two_runs):
    """Same commit, preset and seed, run side by side: byte-identical GMMs, alignments,
    DNN weights and report tables (issue: the tri1 tree once differed between runs)."""
    a, b, _ = two_runs
    same = [
        "exp/mono/final.gmm.safetensors", "exp/tri1/tree", "exp/tri1/final.gmm.safetensors",
        "exp/tri2b/final.mat", "exp/tri3b/final.gmm.safetensors", "exp/tri3b/trans.ark",
        *(f"exp/tri3b_ali_{s}/{f}" for s in ("train", "dev", "test") for f in ("ali.ark",
                                                                                "pdf.ark")),
        "exp/dnn/final.safetensors", "exp/ensemble/member2/final.safetensors",
        "exp/soft_targets_T2/probs.npy", "exp/distill_T2/final.safetensors",
        "exp/small_soft/last.safetensors", "exp/senone_sets/sets.txt",
        "exp/specialists/spec1/final.safetensors",
    ]  # fmt: skip
    for rel in same:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    tables = [f"{t}.{ext}" for t in ("table1", "temperature", "table5", "specialists",
                                      "specialists_cover", "specialists_systems")
              for ext in ("csv", "md")]  # fmt: skip
    for table in tables:
        assert (a / "report" / table).read_text() == (b / "report" / table).read_text(), table
