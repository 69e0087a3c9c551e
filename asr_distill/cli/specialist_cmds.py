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


def _cluster(args: argparse.Namespace) -> int:
    from asr_distill.nnet.specialists import ClusterConfig, cluster_senones

    if bool(args.gmm_dir) != bool(args.phones):
        raise InputError("cluster-senones: --gmm-dir and --phones go together")
    config = config_from_args(ClusterConfig, args, args.config)
    path = cluster_senones(args.model, args.store, args.out_dir, config, gmm_dir=args.gmm_dir,
                           phones_txt=args.phones, force=args.force)  # fmt: skip
    print(path)
    return 0
