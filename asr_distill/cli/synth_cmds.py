"""Synthetic corpus subcommand: make-synth-corpus."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asr_distill.config import add_config_options, config_from_args
from asr_distill.data.synth import SPLITS, SynthConfig, SynthError, make_synth_corpus

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-synth-corpus",
        help="offline synthetic speech corpus in LibriSpeech layout (flite/espeak-ng + sox)",
        description=(
            "Speak sentences from Debian's fortunes (normalised, all words in CMUdict) with "
            "flite and espeak-ng voices (one speaker per voice+variant; dev and test voices "
            "unseen in train), perturb each utterance (speed, pitch, reverb, noise) and write "
            "OUT/{train,dev,test}/<spk>/<chapter>/<spk>-<chapter>-<nnnn>.flac with "
            "<spk>-<chapter>.trans.txt, plus OUT/SPEAKERS.TXT, OUT/lm_text.txt (sentences in "
            "no split) and OUT/synth_metadata.json. Deterministic for a seed; a killed run "
            "resumes; a finished OUT is left alone unless --force. Needs the Debian packages "
            "flite, espeak-ng, sox and fortunes."
        ),
        epilog=(
            "example: asr-distill make-synth-corpus --out corpora/synth --hours 10 --seed 1 "
            "--nj 4 && asr-distill prepare-librispeech --corpus-dir corpora/synth "
            "--subset train --out data/train"
        ),
    )
    p.add_argument("--out", required=True, type=Path, help="corpus directory to write")
    p.add_argument("--nj", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--config", type=Path, default=None,
                   help="YAML file of SynthConfig options (overridden by the options)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="remake a finished or different corpus")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_options(p, SynthConfig)
    p.set_defaults(func=_make)


def _make(args: argparse.Namespace) -> int:
    config = config_from_args(SynthConfig, args, args.config)
    try:
        summary = make_synth_corpus(
            args.out, config, nj=args.nj, force=args.force, progress=not args.no_progress
        )
    except SynthError as e:
        log.error("%s", e)
        return 1
    for split in SPLITS:
        if not summary.num_utterances.get(split):
            continue
        print(
            f"{split}\t{summary.hours[split]:.3f} h\t{summary.num_utterances[split]} utterances"
            f"\t{summary.num_speakers[split]} speakers"
        )
    if summary.num_synthesized:
        print(f"speed\t{summary.realtime_factor:.1f}x real time ({summary.wall_s:.1f} s wall)")
    return 0
