"""DNN subcommands: train-dnn, curve-summary."""

from __future__ import annotations

import argparse

from asr_distill.config import add_config_options, config_from_args
from asr_distill.nnet.train import TrainConfig, train_dnn


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-dnn",
        help="hybrid DNN with frame-level cross-entropy on a frame store (torchrun: DDP)",
        description="Train an L x H ReLU DNN on spliced windows of TRAIN_STORE's features "
        "to predict its pdf targets (a frame store built with --targets pdf.ark), keeping "
        "the epoch with the best DEV_STORE frame accuracy. Resumable: re-run the same "
        "command after a kill. Under torchrun it trains with DDP (gloo on CPU, nccl on GPU).",
        epilog="examples: asr-distill train-dnn frames/train frames/dev exp/dnn --epochs 8; "
        "torchrun --nproc-per-node 2 -m asr_distill train-dnn frames/train frames/dev exp/dnn",
    )
    p.add_argument("train_store")
    p.add_argument("dev_store")
    p.add_argument("exp_dir")
    add_train_options(p)
    p.set_defaults(func=_train_dnn)

    p = sub.add_parser(
        "curve-summary",
        help="best dev frame accuracy, its epoch and the training time of exp dirs",
        description="One line per train-dnn / distill EXP_DIR, read from its "
        "train_curve.csv: the best dev frame accuracy and its epoch (--last: the last "
        "epoch's), and the seconds of all epochs. Sweeps print their tables with it.",
        epilog="example: asr-distill curve-summary exp/dnn exp/distill_T2",
    )
    p.add_argument("exp_dirs", nargs="+")
    p.add_argument("--last", action="store_true", help="the last epoch, not the best")
    p.add_argument("--label-from", default=None,
                   help="label each row with its dir's path relative to this dir")  # fmt: skip
    p.set_defaults(func=_curve_summary)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The TrainConfig options (shared by train-dnn, train-ensemble and distill), made
    from the dataclass's fields."""
    p.add_argument("--config", help="YAML file of TrainConfig options (e.g. a preset)")
    add_config_options(p, TrainConfig, choices={
        "optimizer": ("sgd", "adamw"), "schedule": ("newbob", "cosine", "constant")})  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="retrain from scratch")


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    return config_from_args(TrainConfig, args, args.config)


def _train_dnn(args: argparse.Namespace) -> int:
    config = train_config_from_args(args)
    train_dnn(args.train_store, args.dev_store, args.exp_dir, config, force=args.force,
              progress=not args.no_progress)  # fmt: skip
    return 0


def _curve_summary(args: argparse.Namespace) -> int:
    from pathlib import Path

    from asr_distill.errors import InputError
    from asr_distill.nnet.curve import best_row, read_train_curve

    print(f"{'run':<34} {'dev acc':>8} {'epoch':>6} {'seconds':>8}")
    missing = 0
    for d in map(Path, args.exp_dirs):
        name = str(d.relative_to(args.label_from)) if args.label_from else d.name
        try:
            rows = read_train_curve(d)
        except InputError:  # a run that failed or never finished an epoch: a row says so
            rows = []
        if not rows:
            missing += 1
            print(f"{name:<34} {'-':>8} {'-':>6} {'-':>8}  (no train curve)")
            continue
        pick = rows[-1] if args.last else best_row(rows)
        seconds = sum(r["seconds"] for r in rows)
        print(f"{name:<34} {pick['dev_frame_acc']:8.2f} {pick['epoch']:>6} {seconds:8.0f}")
    return 1 if missing else 0
