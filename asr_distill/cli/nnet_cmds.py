"""DNN subcommands: train-dnn."""

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
