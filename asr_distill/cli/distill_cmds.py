"""Ensemble and distillation subcommands: train-ensemble, ensemble-accuracy, distill."""

from __future__ import annotations

import argparse

import yaml

from asr_distill.cli.nnet_cmds import add_train_options, train_config_from_args
from asr_distill.config import add_config_options, config_from_args
from asr_distill.io import atomic_open
from asr_distill.nnet.distill import (
    METHODS,
    DistillConfig,
    distill,
    train_ensemble,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-ensemble",
        help="train N DNNs that differ in seed (the teachers)",
        description="Train --members DNNs EXP_DIR/member<i> with seeds base+i (initialisation "
        "and data order); each is an ordinary resumable train-dnn run (re-run to resume). "
        "--parallel runs several at once (CPU threads shared, or one GPU each).",
        epilog="example: asr-distill train-ensemble --members 10 --config conf/dnn_cpu.yaml "
        "frames/train frames/dev exp/ensemble",
    )
    p.add_argument("train_store")
    p.add_argument("dev_store")
    p.add_argument("exp_dir")
    p.add_argument("--members", type=int, default=10, help="(10)")
    p.add_argument("--parallel", type=int, default=1, help="members trained at once (1)")
    p.add_argument("--base-seed", type=int, default=1, help="member i gets seed base+i (1)")
    add_train_options(p)
    p.set_defaults(func=_train_ensemble)

    p = sub.add_parser(
        "ensemble-accuracy",
        help="frame accuracy of each member and of their combined posteriors",
        description="Write OUT (YAML): each model's and the ensemble's frame accuracy on "
        "each STORE.",
    )
    p.add_argument("out")
    p.add_argument("stores", nargs="+")
    p.add_argument("--teacher", action="append", required=True, metavar="MODEL")
    p.add_argument("--combine", choices=("arithmetic", "geometric"), default="arithmetic")
    p.set_defaults(func=_ensemble_accuracy)

    p = sub.add_parser(
        "distill",
        help="train a student from teachers (kd, logit matching, FitNets, self-distillation)",
        description="Train a student DNN like train-dnn, with the loss of --method: kd = "
        "w_soft*T^2*CE(p_teacher(T), q(T)) + w_hard*CE(labels, q(1)) (online teachers, or a "
        "make-soft-targets cache); logits = MSE of mean-centred logits; fitnets = hint "
        "regression of a hidden layer (stage 1, then with kd); self = auxiliary heads taught "
        "by the model's own softmax. A transfer set without labels trains on soft targets.",
        epilog="example: asr-distill distill --teacher exp/ensemble/member0/final --teacher "
        "exp/ensemble/member1/final --temperature 2 --hard-weight 0.5 --config "
        "conf/dnn_cpu.yaml frames/train frames/dev exp/distill_T2",
    )
    p.add_argument("train_store")
    p.add_argument("dev_store")
    p.add_argument("exp_dir")
    p.add_argument("--teacher", action="append", default=None, metavar="MODEL",
                   help="a teacher (exp/ensemble/member0/final); repeat it")  # fmt: skip
    add_config_options(p, DistillConfig, skip=("teachers", "aux_layers"), choices={
        "method": METHODS, "combine": ("arithmetic", "geometric"),
        "weighting": ("uniform", "accuracy")})  # fmt: skip
    p.add_argument("--distill-config", default=None, help="YAML file of DistillConfig options")
    add_train_options(p)
    p.set_defaults(func=_distill)


def _train_ensemble(args: argparse.Namespace) -> int:
    config = train_config_from_args(args)
    train_ensemble(args.train_store, args.dev_store, args.exp_dir, config, members=args.members,
                   parallel=args.parallel, base_seed=args.base_seed, force=args.force)  # fmt: skip
    return 0


def _ensemble_accuracy(args: argparse.Namespace) -> int:
    from asr_distill.features.framestore import FrameStore
    from asr_distill.nnet.model import SpliceDnn
    from asr_distill.nnet.scoring import score_store

    models = [SpliceDnn.load(p) for p in args.teacher]
    out = {"teachers": args.teacher, "combine": args.combine, "stores": {}}
    for store in args.stores:
        score = score_store(models, FrameStore(store), combine=args.combine)
        acc, members = score.frame_accuracy, score.member_frame_accuracies
        out["stores"][store] = {"ensemble": round(acc, 3), "members": [round(a, 3) for a in
                                                                      members]}  # fmt: skip
        print(f"{store}: ensemble {acc:.2f}%, members {min(members):.2f}-{max(members):.2f}% "
              f"(mean {sum(members) / len(members):.2f}%)")  # fmt: skip
    with atomic_open(args.out) as f:
        yaml.safe_dump(out, f, sort_keys=False)
    return 0


def _distill(args: argparse.Namespace) -> int:
    train_config = train_config_from_args(args)
    config = config_from_args(DistillConfig, args, args.distill_config, teachers=args.teacher)
    distill(args.train_store, args.dev_store, args.exp_dir, train_config, config,
            force=args.force, progress=not args.no_progress)  # fmt: skip
    return 0
