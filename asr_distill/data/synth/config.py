"""The synthetic corpus's configuration: one dataclass, every default documented."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from asr_distill.data.synth.text import DEFAULT_EXCLUDED_FILES, DEFAULT_FORTUNES_DIR
from asr_distill.data.synth.voices import default_split_voices, parse_voice
from asr_distill.errors import InputError

SPLITS = ("train", "dev", "test", "transfer")
"""Subset directory names, in the order their speakers are listed. ``transfer`` is extra
audio of the training voices (made only with ``transfer_hours`` > 0)."""
HELD_OUT = ("dev", "test")
"""The splits no training or transfer data may share a speaker or sentence with."""


def _split_voices(split: str):
    return dataclasses.field(default_factory=lambda: default_split_voices(split))


@dataclasses.dataclass
class SynthConfig:
    """How ``make-synth-corpus`` builds its corpus.

    Ranges are ``(low, high)``; each utterance draws uniformly from them.
    """

    hours: float = 1.0
    """Total hours of audio to aim for (planned from estimated durations; roughly met)."""
    seed: int = 0
    """Everything random (sentence split, speakers, perturbations, noise) follows from it."""
    train_fraction: float = 0.8
    dev_fraction: float = 0.1
    test_fraction: float = 0.1
    """Shares of ``hours`` per split (normalised to sum to 1; 0 leaves a split out)."""
    train_voices: tuple[str, ...] = _split_voices("train")
    dev_voices: tuple[str, ...] = _split_voices("dev")
    test_voices: tuple[str, ...] = _split_voices("test")
    """Speakers of each split (``flite:slt``, ``espeak-ng:en-us+m3``); must be disjoint.
    Default: test holds out flite ``rms`` and variants m7/f5/klatt4 of every accent, dev
    holds out ``awb`` and m6/f4/klatt3, train has the rest (2 flite + 96 espeak-ng)."""
    transfer_hours: float = 0.0
    """Hours of extra audio in ``transfer/`` (0: none), on top of ``hours``: voices of
    ``transfer_voices`` speaking sentences of no other split (train's are reused only
    when the pool runs out), for an unlabelled transfer set. Its transcripts are
    written, as for every split; a recipe that uses it as unlabelled never reads them."""
    transfer_voices: tuple[str, ...] = ()
    """Speakers of ``transfer`` (default: the train voices); none may be a dev or test
    voice."""
    flite_weight: float = 4.0
    """A flite speaker's share of its split's audio relative to one espeak-ng speaker."""
    utts_per_chapter: int = 50
    """A speaker's utterances are numbered in chapters of at most this many."""
    fortunes_dir: str = DEFAULT_FORTUNES_DIR
    exclude_fortune_files: tuple[str, ...] = DEFAULT_EXCLUDED_FILES
    min_words: int = 3
    max_words: int = 25
    lm_min_fraction: float = 0.1
    """At least this share of the sentence pool goes to ``lm_text.txt`` (plus all unused)."""
    lm_max_sentences: int = 0
    """If > 0, ``lm_text.txt`` keeps only this many sentences (a smaller vocabulary, LM
    and decoding graph, e.g. for the tiny preset); 0 keeps all."""
    speed_range: tuple[float, float] = (0.9, 1.1)
    """sox ``speed`` factor (tempo and pitch together, like Kaldi's speed perturbation)."""
    pitch_cents_range: tuple[float, float] = (-200.0, 200.0)
    """sox ``pitch`` shift in cents (100 cents = 1 semitone)."""
    snr_db_range: tuple[float, float] = (15.0, 40.0)
    """Signal-to-noise ratio of the added coloured Gaussian noise."""
    noise_tilt_range: tuple[float, float] = (0.0, 2.0)
    """Noise spectrum slope: power ~ 1/f**tilt (0 white, 1 pink, 2 brown)."""
    reverb_probability: float = 0.7
    reverberance_pct_range: tuple[float, float] = (5.0, 40.0)
    room_scale_pct_range: tuple[float, float] = (10.0, 50.0)
    pre_delay_ms_range: tuple[float, float] = (0.0, 20.0)
    wet_gain_db_range: tuple[float, float] = (-8.0, -2.0)
    pad_s_range: tuple[float, float] = (0.1, 0.4)
    """Silence (then noise) added before and after the speech."""
    peak_dbfs_range: tuple[float, float] = (-6.0, -1.0)
    """Peak level of the final 16-bit waveform."""
    espeak_wpm_range: tuple[int, int] = (150, 190)
    """espeak-ng ``-s`` speaking rate, words per minute (default 175)."""
    espeak_pitch_range: tuple[int, int] = (35, 65)
    """espeak-ng ``-p`` pitch, 0-99 (default 50)."""

    def __post_init__(self) -> None:
        # YAML gives lists; keep tuples so configs compare and hash the same way.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                setattr(self, field.name, tuple(value))

    def split_voices(self, split: str) -> tuple[str, ...]:
        if split == "transfer":
            return self.transfer_voices or self.train_voices
        return getattr(self, f"{split}_voices")

    def split_fraction(self, split: str) -> float:
        """The normalised share of ``hours`` that goes to ``split`` (0 for transfer)."""
        if split == "transfer":
            return 0.0
        total = self.train_fraction + self.dev_fraction + self.test_fraction
        return getattr(self, f"{split}_fraction") / total

    def split_hours(self, split: str) -> float:
        """Hours of audio planned for ``split``."""
        if split == "transfer":
            return self.transfer_hours
        return self.hours * self.split_fraction(split)

    def to_json_dict(self) -> dict[str, Any]:
        """The config as plain JSON types (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def validate(self) -> None:
        """Raise :class:`InputError` for values that cannot make a corpus."""
        if not (math.isfinite(self.hours) and self.hours > 0):
            raise InputError(f"hours must be a positive number, got {self.hours}")
        fractions = [self.train_fraction, self.dev_fraction, self.test_fraction]
        if any(f < 0 for f in fractions) or sum(fractions) <= 0:
            raise InputError(f"split fractions must be >= 0 with a positive sum, got {fractions}")
        if not (math.isfinite(self.transfer_hours) and self.transfer_hours >= 0):
            raise InputError(f"transfer_hours must be >= 0, got {self.transfer_hours}")
        seen: dict[str, str] = {}
        for split in SPLITS:
            voices = self.split_voices(split)
            if self.split_hours(split) > 0 and not voices:
                raise InputError(f"split {split} has a share of the hours but no voices")
            for spec in voices:
                parse_voice(spec)
                # transfer may share train's voices, never dev's or test's
                if spec in seen and not (split == "transfer" and seen[spec] == "train"):
                    raise InputError(
                        f"voice {spec} is in both {seen[spec]} and {split}: "
                        "the splits' speakers must be disjoint (transfer may share train's)"
                    )
                seen.setdefault(spec, split)
        if not 1 <= self.min_words <= self.max_words:
            raise InputError(
                f"need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}"
            )
        if self.lm_max_sentences < 0:
            raise InputError(f"lm_max_sentences must be >= 0, got {self.lm_max_sentences}")
        if not 0 <= self.lm_min_fraction < 1:
            raise InputError(f"lm_min_fraction must be in [0, 1), got {self.lm_min_fraction}")
        if self.utts_per_chapter < 1 or self.utts_per_chapter > 9999:
            raise InputError(f"utts_per_chapter must be 1..9999, got {self.utts_per_chapter}")
        if self.flite_weight <= 0:
            raise InputError(f"flite_weight must be positive, got {self.flite_weight}")
        if not 0 <= self.reverb_probability <= 1:
            raise InputError(f"reverb_probability must be in [0, 1], got {self.reverb_probability}")
        for field in dataclasses.fields(self):
            if field.name.endswith("_range"):
                value = getattr(self, field.name)
                if not isinstance(value, tuple) or len(value) != 2:
                    raise InputError(f"{field.name} must be a pair (low, high), got {value!r}")
                low, high = value
                if not low <= high:
                    raise InputError(f"{field.name}: low > high in {(low, high)}")
        if self.speed_range[0] <= 0:
            raise InputError(f"speed_range must be positive, got {self.speed_range}")
