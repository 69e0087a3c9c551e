"""Feature subcommands: compute-feats."""

from __future__ import annotations

import argparse
import logging

from asr_distill.config import add_config_options, config_from_args
from asr_distill.features.compute import FEATURE_KINDS, FeatureConfig, compute_features

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compute-feats",
        help="Kaldi-identical fbank/MFCC + per-speaker CMVN stats into a new data dir",
        description="Compute features for DATA_DIR into OUT_DIR (a copy of the data dir with "
        "feats.scp, cmvn.scp, utt2dur, utt2num_frames; arks in OUT_DIR/data).",
    )
    p.add_argument("data_dir")
    p.add_argument("out_dir")
    p.add_argument("--config", help="YAML file of FeatureConfig options")
    add_config_options(p, FeatureConfig, choices={"kind": FEATURE_KINDS})
    p.add_argument("--nj", type=int, default=1, help="parallel jobs")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip unreadable/empty audio, listed in OUT_DIR/skipped.txt",
    )
    p.add_argument("--force", action="store_true", help="recompute a finished output")
    p.set_defaults(func=_compute)


def _compute(args: argparse.Namespace) -> int:
    config = config_from_args(FeatureConfig, args, args.config)
    summary = compute_features(
        args.data_dir,
        args.out_dir,
        config,
        num_jobs=args.nj,
        skip_bad=args.skip_bad,
        force=args.force,
    )
    if summary.num_skipped:
        log.warning("%d utterances skipped", summary.num_skipped)
    return 0
