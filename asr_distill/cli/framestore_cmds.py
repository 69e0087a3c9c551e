"""Frame store subcommands: make-frame-store."""

from __future__ import annotations

import argparse
import logging

from asr_distill.features.framestore_build import build_frame_store

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-frame-store",
        help="features (+ pdf-id alignments) into a memory-mapped frame store for DNN training",
        description="Stream FEATS_SCP (and optional per-frame pdf-ids from ali-to-pdf) into "
        "OUT_DIR: feats.npy (float16), targets.npy (int32, -1 = unlabelled), offsets.npy, "
        "utt_ids.txt, meta.json.",
    )
    p.add_argument("feats_scp", help="Kaldi feats.scp (or .ark)")
    p.add_argument("out_dir")
    p.add_argument("--targets", help="pdf-id alignments: Kaldi int-vector ark or scp")
    p.add_argument("--cmvn-scp", help="apply CMVN with these stats (per speaker via --utt2spk)")
    p.add_argument("--utt2spk", help="utt2spk for --cmvn-scp (default: stats keyed by utt)")
    p.add_argument("--norm-vars", action="store_true", help="also normalise variances")
    p.add_argument("--num-pdfs", type=int, default=None, help="default: max pdf-id + 1")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip utterances with missing/mismatched targets or CMVN stats "
        "(listed in OUT_DIR/skipped.txt)",
    )
    p.add_argument(
        "--keep-unaligned", action="store_true",
        help="keep utterances without targets (failed to align) with all frames unlabelled, "
        "listed in OUT_DIR/unaligned.txt (dev/test stores that are decoded whole)",
    )  # fmt: skip
    p.add_argument("--force", action="store_true", help="rebuild a finished store")
    p.set_defaults(func=_make)


def _make(args: argparse.Namespace) -> int:
    summary = build_frame_store(
        args.out_dir,
        args.feats_scp,
        targets=args.targets,
        cmvn_scp=args.cmvn_scp,
        utt2spk=args.utt2spk,
        norm_vars=args.norm_vars,
        num_pdfs=args.num_pdfs,
        skip_bad=args.skip_bad,
        keep_unaligned=args.keep_unaligned,
        force=args.force,
    )
    if summary.num_skipped:
        log.warning("%d utterances skipped", summary.num_skipped)
    return 0
