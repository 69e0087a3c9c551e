"""Specialist subcommands (the paper's section 5): cluster-senones."""

from __future__ import annotations

import argparse

from asr_distill.config import add_config_options, config_from_args
from asr_distill.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    from asr_distill.nnet.specialists import ClusterConfig

    p = sub.add_parser(
        "cluster-senones",
        help="group the senones a generalist confuses: k-means on its posterior covariance",
        description="Run MODEL (the generalist, e.g. the baseline DNN) over the frames of "
        "STORE (up to --max-frames, whole utterances drawn by --seed), take the covariance "
        "matrix of its posterior vectors, and cluster its columns with k-means into "
        "--num-sets disjoint senone sets (Hinton et al. 2015, section 5.3). Writes "
        "OUT_DIR/sets.txt (set-id pdf pdf ..., largest set first) and "
        "OUT_DIR/sets_readable.txt (each senone's training frames, mean posterior and, "
        "with --gmm-dir and --phones, the phones and HMM states that use it).",
        epilog="example: asr-distill cluster-senones --num-sets 10 --gmm-dir exp/tri3b "
        "--phones data/lang/phones.txt exp/dnn/final frames/train exp/senone_sets",
    )
    p.add_argument("model", help="the generalist (stem of <stem>.safetensors + <stem>.yaml)")
    p.add_argument("store", help="frame store (the training frames)")
    p.add_argument("out_dir")
    p.add_argument("--config", help="YAML file of ClusterConfig options")
    add_config_options(p, ClusterConfig)
    p.add_argument("--gmm-dir", help="GMM model dir whose tree made the pdfs (for names)")
    p.add_argument("--phones", help="phones.txt of the lang dir (for names)")
    p.add_argument("--force", action="store_true", help="redo a finished OUT_DIR")
    p.set_defaults(func=_cluster)

    from asr_distill.cli.nnet_cmds import add_train_options
    from asr_distill.nnet.specialists import SpecialistConfig

    p = sub.add_parser(
        "train-specialists",
        help="one specialist per senone set: its senones + a dustbin, from the generalist",
        description="For each set of SETS (cluster-senones' sets.txt; --set picks some), train "
        "OUT_DIR/spec<m> like train-dnn: the generalist's shape and weights to start from, a "
        "softmax over the set's senones plus one dustbin class for all others, batches half "
        "from frames of the set and half from the rest, loss (1 - w) CE(labels) + w T^2 "
        "CE(the generalist's distribution at T, projected onto the set + dustbin) with w = "
        "--soft-weight. OUT_DIR/spec<m>/specialist.yaml records the set, the share of the "
        "training frames it covers and the dustbin logit's correction for the oversampling "
        "(Hinton et al. 2015, section 5). Each run resumes like train-dnn.",
        epilog="example: asr-distill train-specialists --config conf/dnn_cpu.yaml --epochs 3 "
        "exp/dnn/final exp/senone_sets/sets.txt frames/train frames/dev exp/specialists",
    )
    p.add_argument("generalist", help="the generalist (stem of <stem>.safetensors)")
    p.add_argument("sets", help="sets.txt of cluster-senones")
    p.add_argument("train_store")
    p.add_argument("dev_store")
    p.add_argument("out_dir")
    p.add_argument("--set", type=int, action="append", dest="which", metavar="M",
                   help="train set M's specialist only (repeatable; default: all)")  # fmt: skip
    add_config_options(p, SpecialistConfig)
    add_train_options(p)
    p.set_defaults(func=_train_specialists)

    p = sub.add_parser(
        "specialist-accuracy",
        help="frame accuracy of a generalist with its specialists (the paper's Tables 3, 4)",
        description="For each labelled frame of each STORE: the generalist's top --top-n "
        "senones activate the specialists whose sets meet them; the full distribution q "
        "minimises KL(p_g || q) + sum of KL(p_m || q) over the active specialists (their "
        "dustbins corrected): exact for disjoint sets (cluster-senones'), else found by "
        "--steps of gradient descent on q's logits. Prints "
        "and writes to OUT (YAML) the frame accuracy of the generalist alone and combined: "
        "overall, on frames whose correct senone a specialist covers, and by the number of "
        "active specialists covering the correct senone (Hinton et al. 2015, section 5.4).",
        epilog="example: asr-distill specialist-accuracy --out exp/specialists/accuracy.yaml "
        "exp/dnn/final exp/specialists frames/dev frames/test",
    )
    p.add_argument("generalist", help="the generalist (stem of <stem>.safetensors)")
    p.add_argument("specialists", help="train-specialists' OUT_DIR (its spec<m> dirs)")
    p.add_argument("stores", nargs="+", help="frame stores to score")
    p.add_argument("--out", help="YAML file of the results")
    p.add_argument("--top-n", type=int, default=1, help="generalist's senones that pick the "
                   "active specialists (the paper's n) [1]")  # fmt: skip
    p.add_argument("--steps", type=int, default=200, help="gradient steps on q's logits, for "
                   "overlapping sets [200]")  # fmt: skip
    p.set_defaults(func=_specialist_accuracy)


def _cluster(args: argparse.Namespace) -> int:
    from asr_distill.nnet.specialists import ClusterConfig, cluster_senones

    if bool(args.gmm_dir) != bool(args.phones):
        raise InputError("cluster-senones: --gmm-dir and --phones go together")
    config = config_from_args(ClusterConfig, args, args.config)
    path = cluster_senones(args.model, args.store, args.out_dir, config, gmm_dir=args.gmm_dir,
                           phones_txt=args.phones, force=args.force)  # fmt: skip
    print(path)
    return 0


def _train_specialists(args: argparse.Namespace) -> int:
    import dataclasses

    from asr_distill.cli.nnet_cmds import train_config_from_args
    from asr_distill.nnet.model import SpliceDnn
    from asr_distill.nnet.specialists import SpecialistConfig, train_specialists

    g = SpliceDnn.load(args.generalist).config
    # a specialist has the generalist's shape, whatever --config says
    train_config = dataclasses.replace(
        train_config_from_args(args), hidden_layers=g.hidden_layers, hidden_dim=g.hidden_dim,
        left_context=g.left_context, right_context=g.right_context)  # fmt: skip
    config = config_from_args(SpecialistConfig, args, None)
    train_specialists(args.generalist, args.sets, args.train_store, args.dev_store, args.out_dir,
                      train_config, config, which=args.which, force=args.force,
                      progress=not args.no_progress)  # fmt: skip
    return 0


def _specialist_accuracy(args: argparse.Namespace) -> int:
    import yaml

    from asr_distill.features.framestore import FrameStore
    from asr_distill.io import atomic_open
    from asr_distill.nnet.model import SpliceDnn
    from asr_distill.nnet.specialists import load_specialists, score_specialists

    specialists = load_specialists(args.specialists)
    generalist = SpliceDnn.load(args.generalist).eval()
    out = {"generalist": args.generalist, "specialists": [s.path for s in specialists],
           "top_n": args.top_n, "steps": args.steps, "stores": {}}  # fmt: skip
    for store in args.stores:
        r = score_specialists(generalist, specialists, FrameStore(store), top_n=args.top_n,
                              steps=args.steps)  # fmt: skip
        out["stores"][store] = r
        print(f"{store}: {r['frames']} frames; generalist {r['generalist']:.2f}%, with "
              f"{len(specialists)} specialists {r['with_specialists']:.2f}%; on the "
              f"{r['covered_frames']} frames a specialist covers {r['covered_generalist']:.2f}%"
              f" -> {r['covered_with_specialists']:.2f}%")  # fmt: skip
        for k, row in r["by_active_cover"].items():
            rel = row["relative_change"]  # None: the generalist had none of them right
            print(f"  {k} active specialist(s) cover the correct senone: {row['frames']} frames,"
                  f" correct {row['generalist_correct']} -> {row['combined_correct']} "
                  f"({'n/a' if rel is None else f'{rel:+.2f}%'})")  # fmt: skip
    if args.out:
        with atomic_open(args.out) as f:
            yaml.safe_dump(out, f, sort_keys=False)
    return 0
