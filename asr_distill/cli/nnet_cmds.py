"""DNN subcommands: train-dnn."""

from __future__ import annotations

import argparse

from asr_distill.config import load_config
from asr_distill.errors import InputError
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
    """The TrainConfig options (shared by train-dnn, train-ensemble and distill)."""
    p.add_argument("--config", help="YAML file of TrainConfig options (e.g. a preset)")
    for name, kind in (("hidden-layers", int), ("hidden-dim", int), ("left-context", int),
                       ("right-context", int), ("lr", float), ("batch-size", int),
                       ("epochs", int), ("seed", int), ("data-fraction", float),
                       ("early-stopping", int), ("checkpoint-every", int),
                       ("weight-decay", float), ("warmup-steps", int),
                       ("dropout", float)):  # fmt: skip
        p.add_argument(f"--{name}", type=kind, default=None)
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default=None)
    p.add_argument("--schedule", choices=("newbob", "cosine", "constant"), default=None)
    p.add_argument(
        "--newbob-restore", action=argparse.BooleanOptionalAction, default=None,
        help="newbob: start the epoch after a rejected one from the best weights (on)",
    )  # fmt: skip
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--bf16", action="store_true", default=None, help="bf16 autocast (GPU)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile")
    p.add_argument("--fused-optimizer", action="store_true", default=None, help="(GPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="retrain from scratch")


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = ("hidden_layers", "hidden_dim", "left_context", "right_context", "lr",
             "batch_size", "epochs", "seed", "data_fraction", "early_stopping",
             "checkpoint_every", "weight_decay", "warmup_steps", "dropout", "optimizer", "schedule",
             "device", "bf16", "compile", "fused_optimizer", "newbob_restore")  # fmt: skip
    try:
        config = load_config(TrainConfig, args.config, **{n: getattr(args, n) for n in names})
    except ValueError as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"bad option: {e}", args.config) from None
    return config


def _train_dnn(args: argparse.Namespace) -> int:
    config = train_config_from_args(args)
    train_dnn(args.train_store, args.dev_store, args.exp_dir, config, force=args.force,
              progress=not args.no_progress)  # fmt: skip
    return 0
