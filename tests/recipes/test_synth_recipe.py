"""End-to-end smoke run of recipes/synth/run.sh at the tiny preset: every stage from
the synthetic corpus to the report, then a re-run that must do nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.recipes import RECIPE_MARKS, REPO

RECIPE = REPO / "recipes" / "synth" / "run.sh"

pytestmark = RECIPE_MARKS


def run(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(RECIPE), "--preset", "tiny", "--nj", "2", "--work-dir", str(work), *args],
        capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def test_tiny_recipe_end_to_end_and_rerun_is_a_noop(tmp_path):
    work = tmp_path / "synth"
    out = run(work)
    assert out.returncode == 0, out.stderr[-4000:]
    for stage in range(18):
        assert f"Stage {stage}:" in out.stderr, f"stage {stage} did not run"
    report = (work / "report" / "report.md").read_text()
    for section in ("## Table 1", "## Temperature sweep", "## Table 5", "claims, checked"):
        assert section in report
    assert "Not measured" not in report  # every input of the report was produced
    for png in ("temperature.png", "table5_dev_curve.png"):
        assert (work / "report" / png).stat().st_size > 1000
    exp = work / "exp"
    assert (exp / "tri1" / "decode_test" / "best_wer").is_file()
    assert len((exp / "ensemble" / "members.txt").read_text().split()) == 3
    # A second run finds every step done: nothing is retrained or re-decoded.
    stamp = (exp / "dnn" / "final.safetensors").stat().st_mtime_ns
    again = run(work, "--stage", "5")
    assert again.returncode == 0, again.stderr[-4000:]
    assert (exp / "dnn" / "final.safetensors").stat().st_mtime_ns == stamp
    assert again.stderr.count("nothing to do") >= 20
