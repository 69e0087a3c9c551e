"""Plan the whole corpus from the seed before any audio is made.

The plan fixes, for every utterance, its split, speaker, chapter, id, sentence and
perturbation parameters, so a killed run that is resumed makes exactly the corpus
an uninterrupted run makes. Randomness:

* planning (sentence shuffle, speaker order): ``default_rng([seed, 0])``;
* utterance ``i``'s perturbation: ``default_rng([seed, 1, i])``;
* utterance ``i``'s noise (in the worker): ``default_rng([seed, 2, i])``.

Sentences: the shuffled pool first gives ``lm_min_fraction`` of itself to the LM
text, then test, dev, train and transfer take fresh sentences until their planned
hours are met; every sentence left over also goes to the LM text, so the sets are
disjoint. Only train and transfer may run out, and then reuse train's sentences with
other speakers (logged). Within a split, each utterance goes to the speaker with the
least planned audio per unit weight (flite voices weigh ``flite_weight``).
:func:`check_held_out` then refuses a plan whose train or transfer audio shares a
speaker or a sentence with dev or test.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np

from asr_distill.data.synth.config import HELD_OUT, SPLITS, SynthConfig
from asr_distill.data.synth.perturb import Perturbation, estimate_seconds, sample_perturbation
from asr_distill.data.synth.text import Lexicon
from asr_distill.data.synth.voices import Voice, parse_voice
from asr_distill.errors import InputError

log = logging.getLogger(__name__)

PLAN_STREAM, PERTURB_STREAM, NOISE_STREAM = 0, 1, 2
_PLAN_ORDER = ("test", "dev", "train", "transfer")
"""Held-out splits draw their sentences first, so train and transfer are the ones that may
run out."""


@dataclasses.dataclass(frozen=True)
class PlannedUtterance:
    """One utterance of the plan."""

    index: int
    """Position in the plan; seeds its perturbation and noise."""
    split: str
    utt_id: str
    """``<spk>-<chapter>-<nnnn>``."""
    speaker_id: int
    chapter_id: int
    voice: Voice
    text: str
    perturbation: Perturbation
    estimated_s: float

    @property
    def chapter_dir(self) -> str:
        """``<split>/<spk>/<chapter>``, relative to the corpus root."""
        return f"{self.split}/{self.speaker_id}/{self.chapter_id}"

    @property
    def flac_relpath(self) -> str:
        return f"{self.chapter_dir}/{self.utt_id}.flac"


@dataclasses.dataclass(frozen=True)
class CorpusPlan:
    utterances: tuple[PlannedUtterance, ...]
    lm_sentences: tuple[str, ...]
    num_reused_train_sentences: int

    def split_utterances(self, split: str) -> list[PlannedUtterance]:
        return [u for u in self.utterances if u.split == split]

    def split_voices(self, split: str) -> list[Voice]:
        """The split's speakers that have utterances, by speaker id."""
        voices = {u.voice.speaker_id: u.voice for u in self.utterances if u.split == split}
        return [voices[k] for k in sorted(voices)]


class _SentenceStream:
    """Fresh sentences from the shuffled pool; train may then cycle its own sentences."""

    def __init__(self, pool: Sequence[str], rng: np.random.Generator):
        self._pool = pool
        self._next = 0
        self._rng = rng
        self.num_reused = 0

    @property
    def used(self) -> int:
        return self._next

    def fresh(self) -> str | None:
        if self._next >= len(self._pool):
            return None
        sentence = self._pool[self._next]
        self._next += 1
        return sentence

    def reuse(self, own: Sequence[str]) -> Iterator[str]:
        """Endless passes over ``own`` (each pass reshuffled)."""
        while True:
            for k in self._rng.permutation(len(own)):
                self.num_reused += 1
                yield own[int(k)]


def _speaker_weights(voices: Sequence[Voice], config: SynthConfig) -> np.ndarray:
    return np.array([config.flite_weight if v.engine == "flite" else 1.0 for v in voices])


def plan_corpus(config: SynthConfig, sentences: Sequence[str], lexicon: Lexicon) -> CorpusPlan:
    """Plan every utterance of the corpus (deterministic for ``config`` and ``sentences``)."""
    if len(set(sentences)) != len(sentences):
        raise ValueError("sentences must be distinct")
    rng = np.random.default_rng([config.seed, PLAN_STREAM])
    shuffled = [sentences[int(k)] for k in rng.permutation(len(sentences))]
    num_lm = math.ceil(config.lm_min_fraction * len(shuffled))
    lm_reserved, pool = shuffled[:num_lm], shuffled[num_lm:]
    stream = _SentenceStream(pool, rng)

    drafts: list[tuple[str, Voice, str, Perturbation, float]] = []
    train_sentences: list[str] = []
    for split in _PLAN_ORDER:
        target_s = config.split_hours(split) * 3600
        if target_s <= 0:
            continue
        voices = [parse_voice(spec) for spec in config.split_voices(split)]
        voices = [voices[int(k)] for k in rng.permutation(len(voices))]
        weights = _speaker_weights(voices, config)
        planned_s = np.zeros(len(voices))
        own: list[str] = []
        reuse: Iterator[str] | None = None
        while planned_s.sum() < target_s:
            sentence = stream.fresh() if reuse is None else next(reuse)
            if sentence is None:
                reusable = own if split == "train" else train_sentences
                if split not in ("train", "transfer") or not reusable:
                    raise InputError(
                        f"only {len(sentences)} usable sentences: not enough for {split} "
                        f"({target_s / 3600:.2f} h) with distinct sentences per split; "
                        "lower --hours or add fortune files",
                        config.fortunes_dir,
                    )
                log.warning(
                    "%s: sentence pool exhausted after %d sentences (%.2f of %.2f h "
                    "planned); reusing train sentences with other speakers",
                    split,
                    len(own),
                    planned_s.sum() / 3600,
                    target_s / 3600,
                )
                reuse = stream.reuse(list(reusable))
                continue
            if reuse is None:
                own.append(sentence)
            k = int(np.argmin(planned_s / weights))
            index = len(drafts)
            perturbation = sample_perturbation(
                np.random.default_rng([config.seed, PERTURB_STREAM, index]), config
            )
            seconds = estimate_seconds(lexicon.phones(sentence.split()), voices[k], perturbation)
            planned_s[k] += seconds
            drafts.append((split, voices[k], sentence, perturbation, seconds))
        if split == "train":
            train_sentences = own
        if stream.num_reused:
            log.warning("%s: %d utterances reuse a train sentence", split, stream.num_reused)

    lm_sentences = tuple(lm_reserved + list(pool[stream.used :]))
    if config.lm_max_sentences:
        lm_sentences = lm_sentences[: config.lm_max_sentences]
    plan = CorpusPlan(_number(drafts, config), lm_sentences, stream.num_reused)
    check_held_out(plan)
    return plan


def check_held_out(plan: CorpusPlan) -> None:
    """Refuse (:class:`InputError`) a plan whose train or transfer utterances share a
    speaker or a sentence with dev or test: that would leak the held-out sets into
    training."""
    held = [u for u in plan.utterances if u.split in HELD_OUT]
    held_speakers = {u.speaker_id: u.split for u in held}
    held_text = {u.text: u.split for u in held}
    for u in plan.utterances:
        if u.split in HELD_OUT:
            continue
        if u.speaker_id in held_speakers:
            raise InputError(
                f"{u.split} utterance {u.utt_id} has speaker {u.speaker_id} ({u.voice.spec}) "
                f"of {held_speakers[u.speaker_id]}: held-out speakers must not be in training data"
            )
        if u.text in held_text:
            raise InputError(
                f"{u.split} utterance {u.utt_id} has a sentence of {held_text[u.text]} "
                f"({u.text!r}): held-out sentences must not be in training data"
            )


def _number(
    drafts: Sequence[tuple[str, Voice, str, Perturbation, float]], config: SynthConfig
) -> tuple[PlannedUtterance, ...]:
    """Give utterances LibriSpeech-like ids: per speaker, chapters ``<spk>001``, ``<spk>002``,
    ... of ``utts_per_chapter`` utterances each."""
    count: dict[int, int] = {}
    out = []
    for index, (split, voice, text, perturbation, seconds) in enumerate(drafts):
        n = count.get(voice.speaker_id, 0)
        count[voice.speaker_id] = n + 1
        chapter_no = n // config.utts_per_chapter + 1
        if chapter_no >= 1000:
            raise InputError(
                f"speaker {voice.spec} would need {chapter_no} chapters; raise utts_per_chapter"
            )
        chapter_id = voice.speaker_id * 1000 + chapter_no
        utt_id = f"{voice.speaker_id}-{chapter_id}-{n % config.utts_per_chapter:04d}"
        out.append(
            PlannedUtterance(
                index,
                split,
                utt_id,
                voice.speaker_id,
                chapter_id,
                voice,
                text,
                perturbation,
                seconds,
            )
        )
    return tuple(out)


def planned_hours(plan: CorpusPlan) -> dict[str, float]:
    """Estimated hours per split."""
    return {
        split: sum(u.estimated_s for u in plan.utterances if u.split == split) / 3600
        for split in SPLITS
    }
