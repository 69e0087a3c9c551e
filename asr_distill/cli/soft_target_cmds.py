"""Soft-target subcommands: make-soft-targets."""

from __future__ import annotations

import argparse
import logging

from asr_distill.errors import InputError
from asr_distill.nnet.ensemble import COMBINES
from asr_distill.nnet.soft_targets import make_soft_targets

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-soft-targets",
        help="cache a frozen teacher ensemble's top-k distribution at temperature T per frame",
        description="Run the teachers over every frame of STORE (a frame store) and write "
        "OUT_DIR: probs.npy (float16, top-k of the ensemble's distribution at T, "
        "descending; with --top-k 0 every pdf's, in pdf order), indices.npy (int32 "
        "pdf-ids; none when dense), tail.npy (float32 mass outside the top-k), meta.json; "
        "with --freq-mask, --views masked views of every frame and bands.npy. "
        "A distillation run reads it instead of running the teachers.",
        epilog="example: asr-distill make-soft-targets frames/train exp/soft_T2 "
        "--teacher exp/dnn_s1/final --teacher exp/dnn_s2/final --temperature 2 --top-k 64; "
        "a generalist with its specialists: asr-distill make-soft-targets frames/train "
        "exp/soft_spec_T2 --teacher exp/dnn/final --specialists exp/specialists "
        "--specialist-top-n 2 --temperature 2 --top-k 0",
    )
    p.add_argument("store", help="frame store directory")
    p.add_argument("out_dir")
    p.add_argument(
        "--teacher",
        action="append",
        required=True,
        metavar="MODEL",
        help="a saved DNN (stem of <stem>.safetensors + <stem>.yaml); repeat for an ensemble",
    )
    p.add_argument("--temperature", type=float, required=True, help="T of the soft targets")
    p.add_argument("--top-k", type=int, required=True,
                   help="probabilities kept per frame; 0 (or the number of pdfs): all, as a "
                   "dense cache without indices")  # fmt: skip
    p.add_argument("--combine", choices=COMBINES, default="arithmetic")
    p.add_argument(
        "--weights", type=float, nargs="+", default=None, help="per-teacher weights (normalised)"
    )
    p.add_argument("--views", type=int, default=1,
                   help="with --freq-mask: label this many masked views of every frame; a "
                   "student's epoch e trains on view e mod VIEWS, its windows under the same "
                   "bands [1]")  # fmt: skip
    p.add_argument("--freq-mask", type=int, default=0,
                   help="SpecAugment frequency band of up to this many dims per window and "
                   "view, fixed in the cache [0: clean windows]")  # fmt: skip
    p.add_argument("--mask-seed", type=int, default=0, help="seed of the views' bands [0]")
    p.add_argument("--specialists", default=None, metavar="DIR",
                   help="train-specialists' DIR: the one --teacher is their generalist and the "
                   "cache holds their combination q (specialist-accuracy's) at T, "
                   "softmax(log q / T): a student distilled from it learns the generalist "
                   "with its specialists")  # fmt: skip
    p.add_argument("--specialist-top-n", type=int, default=1, metavar="N",
                   help="with --specialists: the generalist's top N senones pick the active "
                   "specialists (specialist-accuracy's --top-n) [1]")  # fmt: skip
    p.add_argument("--specialist-steps", type=int, default=200, metavar="S",
                   help="with --specialists whose sets overlap: gradient steps on q's logits "
                   "(disjoint sets get the exact q) [200]")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=4096, help="frames per forward pass")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="recompute a finished cache")
    p.set_defaults(func=_make)


def _make(args: argparse.Namespace) -> int:
    try:
        summary = make_soft_targets(
            args.store,
            args.teacher,
            args.out_dir,
            temperature=args.temperature,
            top_k=args.top_k,
            combine=args.combine,
            weights=args.weights,
            batch_size=args.batch_size,
            device=args.device,
            views=args.views,
            freq_mask=args.freq_mask,
            mask_seed=args.mask_seed,
            specialists=args.specialists,
            top_n=args.specialist_top_n,
            steps=args.specialist_steps,
            force=args.force,
            progress=not args.no_progress,
        )
    except ValueError as e:  # a bad option (T <= 0, k out of range): no traceback
        if isinstance(e, InputError):
            raise
        raise InputError(f"bad option: {e}") from None
    log.info(
        "soft targets %s (%s): %d frames, top-%d of %d pdfs, T=%g, mean tail mass %.4g, %.1f s",
        summary.path,
        "written" if summary.built else "already complete",
        summary.num_frames,
        summary.top_k,
        summary.num_pdfs,
        summary.temperature,
        summary.mean_tail,
        summary.seconds,
    )
    return 0
