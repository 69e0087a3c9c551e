"""GMM-HMM subcommands: train-mono, align, convert-ali, build-tree, train-tri,
train-lda-mllt, train-sat."""

from __future__ import annotations

import argparse
import dataclasses

from asr_distill.config import add_config_options, config_from_args
from asr_distill.hmm.align import AlignOptions
from asr_distill.hmm.sat import SatConfig, train_sat
from asr_distill.hmm.train import MonoConfig, align_data_dir, train_mono
from asr_distill.hmm.triphone import (
    LdaMlltConfig,
    TreeConfig,
    TriConfig,
    build_tree_dir,
    convert_ali_dir,
    train_lda_mllt,
    train_tri,
)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file of options (the dataclass's fields)")
    p.add_argument("--force", action="store_true", help="redo a finished output")


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
    add_config_options(p, MonoConfig)
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
    p.add_argument("--nj", type=int, default=1, help="alignment processes (1)")
    add_config_options(p, AlignOptions)
    p.set_defaults(func=_align)

    p = sub.add_parser(
        "convert-ali",
        help="alignments onto another model's tree (Kaldi's convert-ali)",
        description="Map ALI_DIR's alignments (of the model ALI_DIR holds) onto MODEL_DIR's "
        "tree and transition model: each frame keeps its phone, HMM state and "
        "transition, and gets the pdf of its phonetic context in MODEL_DIR's tree. Writes "
        "OUT_DIR as align does (ali.ark, pdf.ark, phones.ctm, failed.txt, pdf_counts, "
        "num_pdfs, MODEL_DIR's model). The HMM topologies must be the same.",
        epilog="example: asr-distill convert-ali data/lang exp/tri1 exp/tri3b_ali_train "
        "exp/tri3b_ali_train_tri1",
    )
    p.add_argument("lang")
    p.add_argument("model_dir")
    p.add_argument("ali_dir")
    p.add_argument("out_dir")
    p.add_argument("--force", action="store_true", help="redo a finished output")
    p.set_defaults(func=_convert_ali)

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
    _add_common(p)
    add_config_options(p, TreeConfig)
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
    _add_tri_options(p, TriConfig, _train_tri)

    p = sub.add_parser(
        "train-lda-mllt",
        help="triphone GMM-HMM on LDA+MLLT features (Kaldi's train_lda_mllt.sh)",
        description="Splice +-3 frames of DATA's CMVN'd MFCC, estimate LDA to --dim "
        "dimensions from ALI_DIR's pdf alignments (silence left out), build a tree on "
        "those features and train triphones as train-tri, re-estimating MLLT on "
        "--mllt-iters. EXP_DIR also gets final.mat (Kaldi's matrix: MLLT times LDA) and "
        "splice_opts; align and decode with EXP_DIR use those features.",
        epilog="example: asr-distill train-lda-mllt data/train_mfcc data/lang exp/tri1_ali "
        "exp/tri2b --num-leaves 2500 --tot-gauss 15000",
    )
    _add_tri_options(p, LdaMlltConfig, _train_lda_mllt)

    p = sub.add_parser(
        "train-sat",
        help="speaker-adaptive training with fMLLR (Kaldi's train_sat.sh)",
        description="On ALI_DIR's features (LDA+MLLT from its final.mat, or deltas): "
        "fMLLR per speaker of DATA (ALI_DIR's trans.ark if it has one, else estimated "
        "with its model), a tree on the adapted features, triphone EM with the "
        "transforms re-estimated on --fmllr-iters, then the speaker-independent "
        "alignment model. EXP_DIR gets final.mat, alimdl/ and trans.ark (Kaldi's "
        "archive of [A b] per speaker); align and decode with EXP_DIR run two passes "
        "(align_fmllr.sh, decode_fmllr.sh).",
        epilog="example: asr-distill train-sat data/train_mfcc data/lang exp/tri2b_ali "
        "exp/tri3b --num-leaves 2500 --tot-gauss 15000",
    )
    _add_tri_options(p, SatConfig, _train_sat)


def _add_tri_options(p: argparse.ArgumentParser, cls: type, func) -> None:
    """DATA LANG ALI_DIR EXP_DIR and the options of a triphone trainer (``cls``) and its
    tree."""
    for name in ("data", "lang", "ali_dir", "exp_dir"):
        p.add_argument(name)
    _add_common(p)
    add_config_options(p, cls, skip=("tree",))
    add_config_options(p, TreeConfig)
    p.set_defaults(func=func)


def _build_tree(args: argparse.Namespace) -> int:
    config = config_from_args(TreeConfig, args, args.config)
    build_tree_dir(args.data, args.lang, args.ali_dir, args.tree_dir, config, force=args.force)
    return 0


def _tri_config(cls: type, args: argparse.Namespace) -> TriConfig:
    """A triphone config from the YAML file and options, the tree's options included."""
    config = config_from_args(cls, args, args.config)
    tree_fields = [f.name for f in dataclasses.fields(TreeConfig)]
    given = {k: getattr(args, k) for k in tree_fields if getattr(args, k) is not None}
    config.tree = dataclasses.replace(config.tree, **given)
    return config


def _train_tri(args: argparse.Namespace) -> int:
    config = _tri_config(TriConfig, args)
    train_tri(args.data, args.lang, args.ali_dir, args.exp_dir, config, force=args.force)
    return 0


def _train_lda_mllt(args: argparse.Namespace) -> int:
    config = _tri_config(LdaMlltConfig, args)
    train_lda_mllt(args.data, args.lang, args.ali_dir, args.exp_dir, config, force=args.force)
    return 0


def _train_sat(args: argparse.Namespace) -> int:
    config = _tri_config(SatConfig, args)
    train_sat(args.data, args.lang, args.ali_dir, args.exp_dir, config, force=args.force)
    return 0


def _train_mono(args: argparse.Namespace) -> int:
    config = config_from_args(MonoConfig, args, args.config)
    train_mono(args.data, args.lang, args.exp_dir, config, force=args.force)
    return 0


def _convert_ali(args: argparse.Namespace) -> int:
    convert_ali_dir(args.lang, args.model_dir, args.ali_dir, args.out_dir, force=args.force)
    return 0


def _align(args: argparse.Namespace) -> int:
    opts = config_from_args(AlignOptions, args, args.config)
    align_data_dir(args.data, args.lang, args.model_dir, args.ali_dir, opts, nj=args.nj,
                   force=args.force)  # fmt: skip
    return 0
