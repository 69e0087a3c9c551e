"""GMM-HMM subcommands: train-mono, align, build-tree, train-tri."""

from __future__ import annotations

import argparse
import dataclasses

from asr_distill.config import load_config
from asr_distill.hmm.align import AlignOptions
from asr_distill.hmm.train import MonoConfig, align_data_dir, train_mono
from asr_distill.hmm.triphone import TreeConfig, TriConfig, build_tree_dir, train_tri


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file of options (the dataclass's fields)")
    p.add_argument("--nj", type=int, default=None, help="alignment processes (1)")
    p.add_argument("--force", action="store_true", help="redo a finished output")


def _add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--seed", type=int, default=None, help="seed of the perturbation of split Gaussians (0)"
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-mono",
        help="flat-start monophone GMM-HMM (Kaldi's train_mono.sh)",
        description="Train a monophone GMM-HMM on DATA (a data dir with MFCC feats.scp and "
        "cmvn.scp; deltas are added) with LANG: equal alignment, EM with Kaldi's "
        "realignment schedule, mixing up to --tot-gauss. Writes EXP_DIR (tree, topo, "
        "final.gmm.safetensors, train_curve.tsv, log/train.log).",
        epilog="example: asr-distill train-mono data/train_mfcc data/lang exp/mono --nj 2",
    )
    p.add_argument("data")
    p.add_argument("lang")
    p.add_argument("exp_dir")
    _add_common(p)
    p.add_argument("--num-iters", type=int, default=None, help="EM iterations (40)")
    p.add_argument("--tot-gauss", type=int, default=None, help="target Gaussians (1000)")
    p.add_argument("--boost-silence", type=float, default=None, help="(1.0)")
    p.add_argument(
        "--num-shortest", type=int, default=None, help="train on the N shortest utterances"
    )
    _add_seed(p)
    p.set_defaults(func=_train_mono)

    p = sub.add_parser(
        "align",
        help="forced alignment with a GMM-HMM (Kaldi's align_si.sh)",
        description="Align DATA with MODEL_DIR's GMM-HMM into ALI_DIR: ali.ark "
        "(transition-ids), pdf.ark (ali-to-pdf), phones.ctm, failed.txt (utterances that "
        "did not align, never dropped silently), pdf_counts, num_pdfs and the model.",
        epilog="example: asr-distill align data/train_mfcc data/lang exp/mono exp/mono_ali",
    )
    p.add_argument("data")
    p.add_argument("lang")
    p.add_argument("model_dir")
    p.add_argument("ali_dir")
    _add_common(p)
    p.add_argument("--beam", type=float, default=None, help="(10)")
    p.add_argument("--retry-beam", type=float, default=None, help="(40)")
    p.add_argument("--boost-silence", type=float, default=None, help="(1.0)")
    p.set_defaults(func=_align)

    p = sub.add_parser(
        "build-tree",
        help="phonetic decision tree from alignments (Kaldi's acc-tree-stats + build-tree)",
        description="Accumulate per-context Gaussian stats from ALI_DIR's alignments of DATA, "
        "make questions (phone clustering + the lang's extra_questions) and grow a tree "
        "by likelihood gain to --num-leaves, then post-cluster. Writes TREE_DIR/tree (Kaldi "
        "binary ContextDependency), tree.txt (readable), tree_stats.npz, questions.txt.",
        epilog="example: asr-distill build-tree data/train_mfcc data/lang exp/mono_ali "
        "exp/tree --num-leaves 2000",
    )
    p.add_argument("data")
    p.add_argument("lang")
    p.add_argument("ali_dir")
    p.add_argument("tree_dir")
    p.add_argument("--config", help="YAML file of TreeConfig options")
    p.add_argument("--force", action="store_true", help="redo a finished output")
    _add_tree_options(p)
    p.set_defaults(func=_build_tree)

    p = sub.add_parser(
        "train-tri",
        help="triphone GMM-HMM on a new tree (Kaldi's train_deltas.sh)",
        description="Build a tree from ALI_DIR's alignments, initialise one Gaussian per "
        "leaf from the tree stats, convert the alignments, then EM with realignment and "
        "mixing up to --tot-gauss. Writes EXP_DIR like train-mono, plus the tree files.",
        epilog="example: asr-distill train-tri data/train_mfcc data/lang exp/mono_ali "
        "exp/tri1 --num-leaves 2000 --tot-gauss 10000",
    )
    p.add_argument("data")
    p.add_argument("lang")
    p.add_argument("ali_dir")
    p.add_argument("exp_dir")
    _add_common(p)
    _add_tree_options(p)
    p.add_argument("--tot-gauss", type=int, default=None, help="(10000)")
    p.add_argument("--num-iters", type=int, default=None, help="(35)")
    p.add_argument("--boost-silence", type=float, default=None, help="(1.0)")
    _add_seed(p)
    p.set_defaults(func=_train_tri)


def _add_tree_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-leaves", type=int, default=None, help="most leaves (2000)")
    p.add_argument("--min-count", type=float, default=None, help="least frames a side (100)")
    p.add_argument("--thresh", type=float, default=None, help="least split gain (300)")
    p.add_argument("--cluster-thresh", type=float, default=None, help="(-1: auto)")


def _tree_overrides(args: argparse.Namespace) -> dict:
    return {
        "num_leaves": args.num_leaves, "min_count": args.min_count, "thresh": args.thresh,
        "cluster_thresh": args.cluster_thresh,
    }  # fmt: skip


def _build_tree(args: argparse.Namespace) -> int:
    config = load_config(TreeConfig, args.config, **_tree_overrides(args))
    build_tree_dir(args.data, args.lang, args.ali_dir, args.tree_dir, config, force=args.force)
    return 0


def _train_tri(args: argparse.Namespace) -> int:
    config = load_config(
        TriConfig, args.config, nj=args.nj, tot_gauss=args.tot_gauss,
        num_iters=args.num_iters, boost_silence=args.boost_silence, seed=args.seed,
    )  # fmt: skip
    tree_opts = {k: v for k, v in _tree_overrides(args).items() if v is not None}
    config.tree = dataclasses.replace(config.tree, **tree_opts)
    train_tri(args.data, args.lang, args.ali_dir, args.exp_dir, config, force=args.force)
    return 0


def _train_mono(args: argparse.Namespace) -> int:
    config = load_config(
        MonoConfig, args.config, nj=args.nj, num_iters=args.num_iters,
        tot_gauss=args.tot_gauss, boost_silence=args.boost_silence,
        num_shortest=args.num_shortest, seed=args.seed,
    )  # fmt: skip
    train_mono(args.data, args.lang, args.exp_dir, config, force=args.force)
    return 0


def _align(args: argparse.Namespace) -> int:
    opts = load_config(
        AlignOptions, args.config, beam=args.beam, retry_beam=args.retry_beam,
        boost_silence=args.boost_silence,
    )  # fmt: skip
    align_data_dir(
        args.data, args.lang, args.model_dir, args.ali_dir, opts, nj=args.nj or 1,
        force=args.force,
    )  # fmt: skip
    return 0
