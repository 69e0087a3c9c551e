"""Data-directory subcommands: validate-data-dir, split-data-dir."""

from __future__ import annotations

import argparse
import logging

from asr_distill.data.kaldi_dir import split_data_dir, validate_data_dir

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate-data-dir", help="check a Kaldi data dir (validate_data_dir.sh)")
    p.add_argument("data_dir")
    p.add_argument("--no-audio-check", action="store_true", help="do not check audio files exist")
    p.add_argument("--require-utt2dur", action="store_true")
    p.set_defaults(func=_validate)

    p = sub.add_parser("split-data-dir", help="split a data dir into <dir>/splitN/{1..N}")
    p.add_argument("data_dir")
    p.add_argument("num_jobs", type=int)
    p.add_argument("--per-utt", action="store_true", help="split utterances, not speakers")
    p.set_defaults(func=_split)


def _validate(args: argparse.Namespace) -> int:
    data = validate_data_dir(
        args.data_dir, check_audio=not args.no_audio_check, require_utt2dur=args.require_utt2dur
    )
    hours = sum(data.utt2dur.values()) / 3600 if data.utt2dur else float("nan")
    log.info(
        "%s: OK (%d utterances, %d speakers, %.2f h)",
        args.data_dir,
        len(data.utt2spk),
        len(data.spk2utt),
        hours,
    )
    return 0


def _split(args: argparse.Namespace) -> int:
    parts = split_data_dir(args.data_dir, args.num_jobs, per_utt=args.per_utt)
    log.info("wrote %d parts under %s", len(parts), parts[0].parent)
    return 0
