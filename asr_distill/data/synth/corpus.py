"""``make-synth-corpus``: an offline synthetic speech corpus in LibriSpeech layout.

Layout of ``out_dir``::

    <split>/<spk>/<chapter>/<spk>-<chapter>-<nnnn>.flac   16 kHz mono 16-bit FLAC
    <split>/<spk>/<chapter>/<spk>-<chapter>.trans.txt      <utt-id> <WORDS IN UPPER CASE>
    SPEAKERS.TXT        ID|SEX|SUBSET|MINUTES|NAME (NAME = the TTS voice)
    lm_text.txt         normalised sentences used in no split (for LM training)
    synth_metadata.json seed, hours, config, tool versions, hours per split
    config.yaml         the resolved config (``--config`` input that remakes the corpus)
    utterances.tsv      per utterance: voice, duration, perturbation parameters, text
    .done               written last

with ``<split>`` in ``train``, ``dev``, ``test`` (and ``transfer``, extra audio of
the training voices, with ``transfer_hours``), so ``prepare-librispeech --subset
train`` reads it unchanged. The whole corpus is planned from the seed first
(:mod:`asr_distill.data.synth.plan`); each FLAC file is then written atomically by
worker processes, and a re-run skips files that exist, so a killed run resumes to
the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import multiprocessing
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import soundfile as sf
import yaml
from tqdm import tqdm

from asr_distill import __version__
from asr_distill.data.synth.config import SPLITS, SynthConfig
from asr_distill.data.synth.plan import NOISE_STREAM, CorpusPlan, PlannedUtterance, plan_corpus
from asr_distill.data.synth.render import RenderJob, render_utterance
from asr_distill.data.synth.text import load_cmudict, load_sentences
from asr_distill.data.synth.voices import (
    SAMPLE_RATE_HZ,
    espeak_variants_available,
    parse_voice,
    require_tools,
    tool_versions,
)
from asr_distill.errors import InputError
from asr_distill.io import atomic_open, is_done, mark_done, remove_stale_temps
from asr_distill.logging_setup import file_log

log = logging.getLogger(__name__)

METADATA_FILE = "synth_metadata.json"
SPEAKERS_FILE = "SPEAKERS.TXT"
LM_TEXT_FILE = "lm_text.txt"
UTTERANCES_FILE = "utterances.tsv"
CONFIG_FILE = "config.yaml"
_OUTPUTS = (
    *SPLITS,
    SPEAKERS_FILE,
    LM_TEXT_FILE,
    UTTERANCES_FILE,
    METADATA_FILE,
    CONFIG_FILE,
    ".done",
)
"""Everything ``--force`` removes (the log directory is kept)."""
_DEFAULT_CONFIG = SynthConfig().to_json_dict()


@dataclasses.dataclass(frozen=True)
class SynthSummary:
    """What :func:`make_synth_corpus` made."""

    out_dir: Path
    hours: dict[str, float]
    """Hours of audio per split."""
    num_utterances: dict[str, int]
    num_speakers: dict[str, int]
    num_lm_sentences: int
    num_synthesized: int
    """Utterances made by this run (the rest existed already)."""
    synthesized_s: float
    """Seconds of audio made by this run."""
    wall_s: float
    """Wall time of this run's synthesis."""
    already_done: bool = False

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio made per second of wall time by this run (0 if none made)."""
        return self.synthesized_s / self.wall_s if self.wall_s > 0 else 0.0


def make_synth_corpus(
    out_dir: str | Path,
    config: SynthConfig,
    *,
    nj: int = 1,
    force: bool = False,
    progress: bool = True,
) -> SynthSummary:
    """Make (or finish) the synthetic corpus ``out_dir`` described by ``config``.

    Args:
        out_dir: corpus root (see the module docstring for its layout).
        config: sentences, speakers, hours, seed and perturbation ranges.
        nj: worker processes synthesizing in parallel (default 1).
        force: remake the corpus from scratch; without it a finished corpus with the
            same config is left alone, and an unfinished one is resumed.
        progress: show a progress bar.

    Raises:
        InputError: bad config, or ``out_dir`` holds a corpus made with other settings
            or tool versions (without ``force``).
        MissingToolError: flite, espeak-ng or sox is not installed.
        SynthesisError: a TTS or sox command failed (names the utterance and command).
    """
    with file_log(Path(out_dir) / "log" / "make-synth-corpus.log"):
        config.validate()
        if nj < 1:
            raise InputError(f"nj must be >= 1, got {nj}")
        out_dir = Path(out_dir)
        voices = [parse_voice(s) for split in SPLITS for s in config.split_voices(split)]
        programs = sorted({"sox"} | {v.engine for v in voices})
        require_tools(programs)
        _check_espeak_variants({v.variant for v in voices if v.engine == "espeak-ng"})
        identity = {"config": config.to_json_dict(), "tool_versions": tool_versions(programs)}

        finished = _check_existing(out_dir, identity, force)
        if finished is not None:
            log.info(
                "%s: synthetic corpus already complete; nothing to do (--force remakes it)", out_dir
            )
            return finished
        if force:
            _remove_outputs(out_dir)

        lexicon = load_cmudict()
        sentences = load_sentences(
            lexicon,
            config.fortunes_dir,
            config.exclude_fortune_files,
            config.min_words,
            config.max_words,
        )
        plan = plan_corpus(config, sentences, lexicon)
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_json(out_dir / METADATA_FILE, {**_header(config), **identity, "complete": False})
        with atomic_open(out_dir / CONFIG_FILE) as f:
            yaml.safe_dump(config.to_json_dict(), f, sort_keys=True)
        remove_stale_temps(out_dir)

        todo = [u for u in plan.utterances if not (out_dir / u.flac_relpath).is_file()]
        log.info(
            "plan: %d utterances, %d LM sentences; %d already made, %d to synthesize with "
            "%d job(s)",
            len(plan.utterances),
            len(plan.lm_sentences),
            len(plan.utterances) - len(todo),
            len(todo),
            nj,
        )
        start = time.perf_counter()
        made = _render_all(
            [_job(out_dir, u, config.seed) for u in todo], nj, progress, len(plan.utterances)
        )
        wall_s = time.perf_counter() - start
        num_samples = dict(made)
        for u in plan.utterances:
            if u.utt_id not in num_samples:
                num_samples[u.utt_id] = _existing_num_samples(out_dir / u.flac_relpath)

        _write_layout(out_dir, plan, num_samples)
        summary = _summarize(out_dir, plan, num_samples, made, wall_s)
        _write_json(
            out_dir / METADATA_FILE,
            {**_header(config), **identity, "complete": True, **_stats(summary)},
        )
        mark_done(out_dir)
        _log_summary(summary)
        return summary


# --------------------------------------------------------------------------- checks


def _check_espeak_variants(variants: set[str | None]) -> None:
    if not variants:
        return
    available = espeak_variants_available()
    if available is None:
        return
    missing = sorted(v for v in variants if v is not None and v not in available)
    if missing:
        raise InputError(
            f"espeak-ng has no voice variant(s) {', '.join(missing)} "
            "(see `espeak-ng --voices=variant`)"
        )


def _header(config: SynthConfig) -> dict[str, Any]:
    return {
        "created_by": f"asr-distill {__version__} make-synth-corpus",
        "seed": config.seed,
        "hours_requested": config.hours,
        "sample_rate_hz": SAMPLE_RATE_HZ,
    }


def _check_existing(out_dir: Path, identity: dict[str, Any], force: bool) -> SynthSummary | None:
    """The finished corpus's summary if there is nothing to do; raise on a mismatch."""
    meta_path = out_dir / METADATA_FILE
    if not meta_path.is_file():
        if not force and any((out_dir / s).exists() for s in SPLITS):
            raise InputError(
                "holds train/dev/test directories but no "
                f"{METADATA_FILE}: not a make-synth-corpus output; use --force or another --out",
                out_dir,
            )
        return None
    try:
        old = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        if force:
            return None
        raise InputError(f"unreadable metadata ({e}); use --force to remake", meta_path) from None
    if force:
        return None
    # Options added since a corpus was made count as their defaults.
    old_config = {**_DEFAULT_CONFIG, **old.get("config", {})}
    if old_config != identity["config"] or old.get("tool_versions") != identity["tool_versions"]:
        changed = [
            name
            for name in sorted(set(old_config) | set(identity["config"]))
            if old_config.get(name) != identity["config"].get(name)
        ]
        detail = f"changed options: {', '.join(changed)}" if changed else "tool versions differ"
        raise InputError(
            f"corpus was made with other settings ({detail}); use --force to remake it "
            "or choose another --out",
            meta_path,
        )
    if not is_done(out_dir) or not old.get("complete"):
        return None
    return SynthSummary(
        out_dir=out_dir,
        hours=old["hours"],
        num_utterances=old["num_utterances"],
        num_speakers=old["num_speakers"],
        num_lm_sentences=old["num_lm_sentences"],
        num_synthesized=0,
        synthesized_s=0.0,
        wall_s=0.0,
        already_done=True,
    )


def _remove_outputs(out_dir: Path) -> None:
    for name in _OUTPUTS:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# --------------------------------------------------------------------------- synthesis


def _job(out_dir: Path, u: PlannedUtterance, seed: int) -> RenderJob:
    return RenderJob(
        utt_id=u.utt_id,
        flac_path=out_dir / u.flac_relpath,
        text=u.text,
        voice=u.voice,
        perturbation=u.perturbation,
        noise_seed=(seed, NOISE_STREAM, u.index),
    )


def _render_all(
    jobs: Sequence[RenderJob], nj: int, progress: bool, total: int
) -> list[tuple[str, int]]:
    """Render ``jobs`` over ``nj`` processes; returns (utt id, samples) for each."""
    results: list[tuple[str, int]] = []
    if not jobs:
        return results
    nj = min(nj, len(jobs))
    with contextlib.ExitStack() as stack:
        pool = None
        if nj > 1:
            # fork (like torch's DataLoader): no re-import of the parent's __main__; the
            # pool is made before the progress bar starts its monitor thread.
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            pool = stack.enter_context(context.Pool(nj))
        bar = stack.enter_context(
            tqdm(
                total=total,
                initial=total - len(jobs),
                unit="utt",
                desc="make-synth-corpus",
                disable=not progress,
            )
        )
        outcomes = (
            map(render_utterance, jobs)
            if pool is None
            else pool.imap_unordered(render_utterance, jobs)
        )
        for result in outcomes:
            results.append(result)
            bar.update()
    return results


def _existing_num_samples(path: Path) -> int:
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as e:
        raise InputError(f"unreadable audio from an earlier run ({e}); use --force", path) from None
    if info.samplerate != SAMPLE_RATE_HZ or info.channels != 1:
        raise InputError(
            f"audio from an earlier run is {info.samplerate} Hz x {info.channels} channels; "
            "use --force",
            path,
        )
    return int(info.frames)


# --------------------------------------------------------------------------- layout


def _write_layout(out_dir: Path, plan: CorpusPlan, num_samples: dict[str, int]) -> None:
    chapters: dict[str, list[PlannedUtterance]] = defaultdict(list)
    for u in plan.utterances:
        chapters[u.chapter_dir].append(u)
    for chapter_dir, utts in chapters.items():
        first = utts[0]
        trans = out_dir / chapter_dir / f"{first.speaker_id}-{first.chapter_id}.trans.txt"
        with atomic_open(trans) as f:
            for u in sorted(utts, key=lambda u: u.utt_id):
                f.write(f"{u.utt_id} {u.text}\n")

    with atomic_open(out_dir / SPEAKERS_FILE) as f:
        f.write("; Speakers of a synthetic corpus made by asr-distill make-synth-corpus.\n")
        f.write("; LibriSpeech SPEAKERS.TXT layout; NAME is the TTS voice that speaks.\n")
        f.write(";ID   |SEX| SUBSET |MINUTES| NAME\n")
        rows = []
        for split in SPLITS:
            for voice in plan.split_voices(split):
                seconds = (
                    sum(
                        num_samples[u.utt_id]
                        for u in plan.utterances
                        if u.speaker_id == voice.speaker_id and u.split == split
                    )
                    / SAMPLE_RATE_HZ
                )
                rows.append((voice.speaker_id, voice.sex, split, seconds / 60, voice.spec))
        for speaker_id, sex, split, minutes, name in sorted(rows):
            f.write(f"{speaker_id:<6}| {sex} | {split:<8} | {minutes:5.2f} | {name}\n")

    with atomic_open(out_dir / LM_TEXT_FILE) as f:
        f.writelines(f"{s}\n" for s in plan.lm_sentences)

    with atomic_open(out_dir / UTTERANCES_FILE) as f:
        columns = [field.name for field in dataclasses.fields(plan.utterances[0].perturbation)]
        f.write("\t".join(["utt_id", "split", "voice", "seconds", *columns, "text"]) + "\n")
        for u in plan.utterances:
            values = ["-" if v is None else str(v) for v in dataclasses.astuple(u.perturbation)]
            seconds = f"{num_samples[u.utt_id] / SAMPLE_RATE_HZ:.3f}"
            f.write("\t".join([u.utt_id, u.split, u.voice.spec, seconds, *values, u.text]) + "\n")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_open(path) as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def _summarize(
    out_dir: Path,
    plan: CorpusPlan,
    num_samples: dict[str, int],
    made: list[tuple[str, int]],
    wall_s: float,
) -> SynthSummary:
    hours, counts, speakers = {}, {}, {}
    for split in SPLITS:
        utts = plan.split_utterances(split)
        hours[split] = sum(num_samples[u.utt_id] for u in utts) / SAMPLE_RATE_HZ / 3600
        counts[split] = len(utts)
        speakers[split] = len(plan.split_voices(split))
    return SynthSummary(
        out_dir=out_dir,
        hours=hours,
        num_utterances=counts,
        num_speakers=speakers,
        num_lm_sentences=len(plan.lm_sentences),
        num_synthesized=len(made),
        synthesized_s=sum(n for _, n in made) / SAMPLE_RATE_HZ,
        wall_s=wall_s,
    )


def _stats(summary: SynthSummary) -> dict[str, Any]:
    return {
        "hours": {k: round(v, 6) for k, v in summary.hours.items()},
        "num_utterances": summary.num_utterances,
        "num_speakers": summary.num_speakers,
        "num_lm_sentences": summary.num_lm_sentences,
    }


def _log_summary(summary: SynthSummary) -> None:
    for split in SPLITS:
        if split == "transfer" and not summary.num_utterances[split]:
            continue
        log.info(
            "%s: %.3f h, %d utterances, %d speakers",
            split,
            summary.hours[split],
            summary.num_utterances[split],
            summary.num_speakers[split],
        )
    if summary.num_synthesized:
        log.info(
            "synthesized %d utterances in %.1f s wall time: %.1fx real time",
            summary.num_synthesized,
            summary.wall_s,
            summary.realtime_factor,
        )
