"""A small real-speech system for GMM-HMM tests: a synthetic corpus (flite/espeak-ng),
Kaldi data dirs, MFCC + CMVN, and a CMUdict lang dir, built once per test session
through the same CLI steps the recipe runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from asr_distill.cli import main

TOOLS = ("flite", "espeak-ng", "sox")


@pytest.fixture(scope="session")
def gmm_system(tmp_path_factory) -> Path:
    """Root dir with data/{train,dev}_mfcc and data/lang (about 4 minutes of speech)."""
    if any(shutil.which(t) is None for t in TOOLS):
        pytest.skip(f"needs {', '.join(TOOLS)} (scripts/setup.sh installs them)")
    root = tmp_path_factory.mktemp("gmm")
    corpus, data = root / "corpus", root / "data"

    def run(*args: str) -> None:
        assert main([str(a) for a in args]) == 0, args

    run("make-synth-corpus", "--out", corpus, "--hours", "0.08", "--seed", "5", "--nj", "2")
    for split in ("train", "dev"):
        run("prepare-librispeech", "--corpus-dir", corpus, "--subset", split, "--out",
            data / split)  # fmt: skip
        run("compute-feats", "--kind", "mfcc", "--nj", "2", data / split,
            data / f"{split}_mfcc")  # fmt: skip
    run("prepare-dict", "--extra-text", data / "dev", data / "train", data / "local" / "dict")
    run("prepare-lang", data / "local" / "dict", data / "lang")
    return root


@pytest.fixture(scope="session")
def mono(gmm_system: Path) -> Path:
    """A monophone model trained on the fixture's train set (12 iterations)."""
    exp = gmm_system / "exp" / "mono"
    data, lang = gmm_system / "data" / "train_mfcc", gmm_system / "data" / "lang"
    assert main(["train-mono", "--nj", "2", "--num-iters", "12", "--tot-gauss", "300",
                 str(data), str(lang), str(exp)]) == 0  # fmt: skip
    return exp
