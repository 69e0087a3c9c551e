"""Data-directory subcommands: validate-data-dir, split-data-dir, perturb-data-dir,
combine-data-dirs."""

from __future__ import annotations

import argparse
import logging

from asr_distill.config import add_config_options, config_from_args
from asr_distill.data.kaldi_dir import command_entries, split_data_dir, validate_data_dir
from asr_distill.data.perturb import PerturbConfig, combine_data_dirs, perturb_data_dir

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate-data-dir", help="check a Kaldi data dir (validate_data_dir.sh)")
    p.add_argument("data_dir")
    p.add_argument("--no-audio-check", action="store_true", help="do not check audio files exist")
    p.add_argument("--require-utt2dur", action="store_true")
    p.add_argument(
        "--no-pipes", action="store_true",
        help="refuse wav.scp / feats.scp entries that are shell commands ('cmd |'), which "
        "reading the data dir would run: for data from elsewhere",
    )  # fmt: skip
    p.set_defaults(func=_validate)

    p = sub.add_parser("split-data-dir", help="split a data dir into <dir>/splitN/{1..N}")
    p.add_argument("data_dir")
    p.add_argument("num_jobs", type=int)
    p.add_argument("--per-utt", action="store_true", help="split utterances, not speakers")
    p.set_defaults(func=_split)

    p = sub.add_parser(
        "perturb-data-dir",
        help="speed-perturbed (and optionally pitch/reverb/noise) copies of a data dir",
        description="Write OUT: for each --speeds factor s a copy of DATA with ids and "
        "speakers prefixed sp<s>- and audio rendered by sox at speed s (Kaldi's "
        "perturb_data_dir_speed_3way.sh; 1.0 keeps the original entries unless another "
        "perturbation is on), durations scaled; optional seeded pitch shift, reverberation "
        "and coloured noise. Compute features on OUT, align it with a GMM, and it becomes a "
        "frame store like any other data.",
        epilog="example: asr-distill perturb-data-dir --speeds 0.9,1.0,1.1 data/train "
        "data/train_sp",
    )
    p.add_argument("data_dir")
    p.add_argument("out_dir")
    p.add_argument("--config", help="YAML file of PerturbConfig options")
    p.add_argument("--nj", type=int, default=1, help="parallel renderers (1)")
    p.add_argument("--force", action="store_true", help="redo a finished output")
    add_config_options(p, PerturbConfig)
    p.set_defaults(func=_perturb)

    p = sub.add_parser(
        "combine-data-dirs",
        help="union of data dirs (combine_data.sh), refusing dev/test speakers or sentences",
        description="Write OUT as the union of the data dirs IN (distinct utterance ids; "
        "features and CMVN are not combined: compute them on OUT). With --disjoint-from "
        "DIR (repeatable) the result must share no speaker (sp<s>- prefixes stripped) and no "
        "transcript with DIR: a transfer or training set never holds dev or test data.",
        epilog="example: asr-distill combine-data-dirs --disjoint-from data/dev "
        "--disjoint-from data/test data/transfer data/train_sp data/unlabelled",
    )
    p.add_argument("out_dir")
    p.add_argument("src_dirs", nargs="+")
    p.add_argument("--disjoint-from", action="append", default=[], metavar="DIR")
    p.set_defaults(func=_combine)


def _perturb(args: argparse.Namespace) -> int:
    config = config_from_args(PerturbConfig, args, args.config)
    perturb_data_dir(args.data_dir, args.out_dir, config, nj=args.nj, force=args.force)
    return 0


def _combine(args: argparse.Namespace) -> int:
    combine_data_dirs(args.out_dir, args.src_dirs, disjoint_from=args.disjoint_from)
    return 0


def _validate(args: argparse.Namespace) -> int:
    data = validate_data_dir(
        args.data_dir, check_audio=not args.no_audio_check, require_utt2dur=args.require_utt2dur,
        allow_pipes=not args.no_pipes,
    )  # fmt: skip
    hours = sum(data.utt2dur.values()) / 3600 if data.utt2dur else float("nan")
    commands = {k: len(v) for k, v in command_entries(data).items() if v}
    log.info(
        "%s: OK (%d utterances, %d speakers, %.2f h)%s", args.data_dir, len(data.utt2spk),
        len(data.spk2utt), hours,
        "; shell commands ('cmd |', run when read): "
        + ", ".join(f"{n} in {k}" for k, n in commands.items()) if commands else "",
    )  # fmt: skip
    if commands:
        log.warning("%s: %s entries are shell commands; reading the dir runs them "
                    "(--no-pipes refuses such data)", args.data_dir,
                    " and ".join(f"{n} {k}" for k, n in commands.items()))  # fmt: skip
    return 0


def _split(args: argparse.Namespace) -> int:
    parts = split_data_dir(args.data_dir, args.num_jobs, per_utt=args.per_utt)
    log.info("wrote %d parts under %s", len(parts), parts[0].parent)
    return 0
