"""Decoding and scoring subcommands: decode, score."""

from __future__ import annotations

import argparse

import yaml

from asr_distill.config import add_config_options, config_from_args
from asr_distill.decode.config import DecodeConfig
from asr_distill.decode.score import read_best_setting, score_decode_dir
from asr_distill.errors import InputError
from asr_distill.io import atomic_open

# decode and frame-accuracy import the decoders when they run, and torch only for DNNs
# (its import costs more than a small GMM decode), so that score starts fast.


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "decode",
        help="decode with HCLG and a GMM-HMM or hybrid DNN(s) (Kaldi's decode.sh)",
        description="Decode DATA (MFCC + CMVN; deltas added) with GRAPH_DIR/HCLG.fst and "
        "MODEL_DIR's GMM-HMM: one lattice search per utterance, then the best path at every "
        "LM weight and word insertion penalty from the lattices (Kaldi's score.sh sweep); "
        "--no-lattice searches once per LM weight (one-best). The sweep on dev, then test "
        "at dev's choice (--lmwt-from). Writes DECODE_DIR/hyp.<LMWT>[_<WIP>].txt, "
        "lat.<N>.gz (Kaldi text CompactLattices, determinized; raw Lattices with "
        "--no-determinize), words.txt, summary.yaml and log/decode.log "
        "(real-time factor).",
        epilog="example: asr-distill decode exp/tri1/graph exp/tri1 data/dev_mfcc "
        "exp/tri1/decode_dev --nj 2",
    )
    p.add_argument("graph_dir")
    p.add_argument("model_dir", help="GMM-HMM dir (its tree and transition model)")
    p.add_argument("data", help="MFCC data dir (GMM), or a frame store (with --dnn)")
    p.add_argument("decode_dir")
    p.add_argument(
        "--dnn", action="append", default=[], metavar="MODEL",
        help="decode with this DNN (exp/dnn/final) instead of the GMM: log posterior - log "
        "prior; repeat for an ensemble (posteriors averaged)",
    )  # fmt: skip
    _add_combine(p)
    p.add_argument(
        "--specialists", default=None, metavar="DIR",
        help="with one --dnn (the generalist): combine it with train-specialists' DIR/spec<m> "
        "as specialist-accuracy does (the generalist's top --specialist-top-n senones pick "
        "the active specialists; KL combination), priors the generalist's",
    )  # fmt: skip
    p.add_argument("--specialist-top-n", type=int, default=1, metavar="N",
                   help="with --specialists: specialist-accuracy's --top-n [1]")  # fmt: skip
    p.add_argument("--config", help="YAML file of DecodeConfig options")
    p.add_argument("--nj", type=int, default=1, help="decoding processes (1)")
    p.add_argument(
        "--lmwt-from", default=None, metavar="DEV_DECODE_DIR",
        help="decode only at the LM weight and penalty that score chose in this (dev) "
        "decode dir (not with --lmwts or --word-ins-penalties)",
    )  # fmt: skip
    add_config_options(p, DecodeConfig)
    p.add_argument("--force", action="store_true", help="redo a finished output")
    p.set_defaults(func=_decode)

    p = sub.add_parser(
        "score",
        help="WER of a decode dir (jiwer), per LM weight and penalty; best or fixed",
        description="Score DECODE_DIR's hyp.<LMWT>[_<WIP>].txt against DATA/text: "
        "wer.<SETTING>, per_utt.<SETTING>, best_wer, scores.yaml, and oracle_wer where "
        "the dir has lattices. Choose the LM weight and penalty on dev (default: best) and "
        "apply them unchanged to test with --lmwt-from DEV_DECODE_DIR.",
        epilog="example: asr-distill score exp/tri1/decode_test data/test "
        "--lmwt-from exp/tri1/decode_dev",
    )
    p.add_argument("decode_dir")
    p.add_argument("data")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--lmwt", type=float, default=None,
        help="report this LM weight (with the best penalty at it)",
    )  # fmt: skip
    g.add_argument(
        "--lmwt-from", default=None, help="use the LM weight and penalty chosen in this dir"
    )
    p.set_defaults(func=_score)

    p = sub.add_parser(
        "lm-rescore",
        help="rescore a decode dir's lattices with another LM (Kaldi's lmrescore.sh)",
        description="Subtract OLD_LM's cost of the words (the first pass's ARPA, whose G is "
        "in the graph) from every lattice of DECODE_DIR and add NEW_LM's (lattices expanded "
        "by LM history), then take the best paths at the decode's LM weights and penalties: "
        "OUT_DIR/lat.<N>.gz, hyp.<LMWT>[_<WIP>].txt, words.txt. Score OUT_DIR as a decode "
        "dir.",
        epilog="example: asr-distill lm-rescore data/lm_small/lm.arpa data/lm/lm.arpa "
        "exp/dnn/decode_dev exp/dnn/decode_dev_rescored --nj 2",
    )
    p.add_argument("old_lm", help="the first pass's ARPA")
    p.add_argument("new_lm", help="the ARPA to rescore with")
    p.add_argument("decode_dir", help="a decode dir with lattices")
    p.add_argument("out_dir")
    p.add_argument("--oov-word", default="<UNK>", help="the lang's OOV word (<UNK>)")
    p.add_argument("--arpa-unk", default="<unk>", help="the ARPAs' unknown word (<unk>)")
    p.add_argument(
        "--beam", type=float, default=6.0,
        help="pruning beam of the expansion and of the result, at the decode's acoustic "
        "scale (6; inf: exact)",
    )  # fmt: skip
    p.add_argument("--nj", type=int, default=1, help="processes (1)")
    p.add_argument("--force", action="store_true", help="redo a finished output")
    p.set_defaults(func=_lm_rescore)

    p = sub.add_parser(
        "frame-accuracy",
        help="frame accuracy of DNN(s) (argmax of averaged posteriors) on frame stores",
        description="Print the share of labelled frames of each STORE whose pdf target is "
        "the argmax of the DNNs' averaged posteriors.",
        epilog="example: asr-distill frame-accuracy --dnn exp/dnn/final frames/dev",
    )
    p.add_argument("stores", nargs="*", help="frame stores with pdf targets")
    p.add_argument("--dnn", action="append", required=True, metavar="MODEL")
    _add_combine(p)
    p.add_argument("--out", default=None, help="also write the accuracies (YAML) here")
    p.add_argument(
        "--subset", action="append", default=[], metavar="STORE",
        help="also score this store's deterministic subset that train-dnn --data-fraction F "
        "--seed S trained on (give --data-fraction and --seed)",
    )  # fmt: skip
    p.add_argument("--data-fraction", type=float, default=1.0, help="of --subset stores")
    p.add_argument("--seed", type=int, default=0, help="seed of the --subset subsets (0)")
    p.set_defaults(func=_frame_accuracy)


def _add_combine(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--combine", choices=("arithmetic", "geometric"), default="arithmetic",
        help="how several --dnn models' posteriors combine, as for distillation (arithmetic)",
    )  # fmt: skip
    p.add_argument(
        "--weighting", choices=("uniform", "accuracy"), default="uniform",
        help="member weights: uniform, or by each model's best dev frame accuracy (its "
        "train_curve.csv) (uniform)",
    )  # fmt: skip


def _decode(args: argparse.Namespace) -> int:
    from asr_distill.decode.decode import decode_data_dir

    if args.lmwt_from and args.lmwts:
        raise InputError("give --lmwts or --lmwt-from, not both")
    chosen = {}
    if args.lmwt_from:
        if args.word_ins_penalties:
            raise InputError("give --word-ins-penalties or --lmwt-from, not both")
        lmwt, wip = read_best_setting(args.lmwt_from)
        chosen = {"lmwts": [lmwt], "word_ins_penalties": [wip]}
    config = config_from_args(DecodeConfig, args, args.config, **chosen)
    if args.dnn:
        from asr_distill.decode.dnn import decode_dnn

        decode_dnn(
            args.graph_dir, args.model_dir, args.dnn, args.data, args.decode_dir, config,
            nj=args.nj, force=args.force, combine=args.combine, weighting=args.weighting,
            specialists=args.specialists, specialist_top_n=args.specialist_top_n,
        )  # fmt: skip
    elif args.specialists:
        raise InputError("--specialists needs --dnn (the generalist)")
    else:
        decode_data_dir(
            args.graph_dir, args.model_dir, args.data, args.decode_dir, config, nj=args.nj,
            force=args.force,
        )  # fmt: skip
    return 0


def _frame_accuracy(args: argparse.Namespace) -> int:
    from asr_distill.decode.dnn import load_models, member_weights
    from asr_distill.features.framestore import FrameStore
    from asr_distill.nnet.scoring import score_store

    models = load_models(args.dnn)
    weights = member_weights(args.dnn, args.weighting)
    results = {}
    for store_dir, fraction in [(s, 1.0) for s in args.stores] + [
        (s, args.data_fraction) for s in args.subset
    ]:
        store = FrameStore(store_dir)
        if fraction < 1:
            store = store.subset(fraction, seed=args.seed)
        score = score_store(models, store, combine=args.combine, weights=weights)
        acc, frames = score.frame_accuracy, score.frames
        results[store_dir] = {"frame_accuracy": round(acc, 3), "frames": frames}
        print(f"{store_dir}: frame accuracy {acc:.2f}% over {frames} frames")
    if args.out:
        with atomic_open(args.out) as f:
            yaml.safe_dump({"models": args.dnn, "combine": args.combine,
                            "weighting": args.weighting, "subset_fraction": args.data_fraction,
                            "subset_seed": args.seed, "stores": results}, f,
                           sort_keys=False)  # fmt: skip
    return 0


def _lm_rescore(args: argparse.Namespace) -> int:
    from asr_distill.decode.rescore import RescoreConfig, lm_rescore

    config = RescoreConfig(old_lm=args.old_lm, new_lm=args.new_lm, oov_word=args.oov_word,
                           arpa_unk=args.arpa_unk, beam=args.beam)  # fmt: skip
    lm_rescore(args.decode_dir, args.out_dir, config, nj=args.nj, force=args.force)
    return 0


def _score(args: argparse.Namespace) -> int:
    lmwt, wip = read_best_setting(args.lmwt_from) if args.lmwt_from else (args.lmwt, None)
    result = score_decode_dir(args.decode_dir, args.data, lmwt=lmwt, wip=wip)
    print(f"{result.kaldi_line()} lmwt {result.lmwt:g} wip {result.wip:g}")
    return 0
