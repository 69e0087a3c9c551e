"""Offline synthetic speech corpus in LibriSpeech layout (flite / espeak-ng + sox).

See :func:`make_synth_corpus`; the CLI is ``asr-distill make-synth-corpus``.
"""

from asr_distill.data.synth.config import SPLITS, SynthConfig
from asr_distill.data.synth.corpus import SynthSummary, make_synth_corpus
from asr_distill.data.synth.plan import CorpusPlan, PlannedUtterance, plan_corpus
from asr_distill.data.synth.render import SynthesisError
from asr_distill.data.synth.text import load_cmudict, load_sentences, normalise_sentence
from asr_distill.data.synth.voices import MissingToolError, SynthError, voice_inventory

__all__ = [
    "SPLITS",
    "CorpusPlan",
    "MissingToolError",
    "PlannedUtterance",
    "SynthConfig",
    "SynthError",
    "SynthSummary",
    "SynthesisError",
    "load_cmudict",
    "load_sentences",
    "make_synth_corpus",
    "normalise_sentence",
    "plan_corpus",
    "voice_inventory",
]
