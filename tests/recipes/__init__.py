"""End-to-end recipe tests: what they share."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Slow, and they need the corpus tools and the installed command (scripts/setup.sh).
RECIPE_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("flite", "espeak-ng", "sox", "asr-distill")),
        reason="needs flite, espeak-ng, sox and the asr-distill command (scripts/setup.sh)",
    ),
]
