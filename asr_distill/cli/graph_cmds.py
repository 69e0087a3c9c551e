"""Decoding-graph subcommands: mkgraph."""

from __future__ import annotations

import argparse

from asr_distill.graph import make_graph


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mkgraph",
        help="decoding graph HCLG.fst (Kaldi's utils/mkgraph.sh)",
        description="Compose the lexicon and grammar of LANG_DIR (a lang dir with G.fst, "
        "as make-g writes it) with the context dependency and HMMs of MODEL_DIR (a "
        "train-mono or train-tri dir) into GRAPH_DIR: HCLG.fst (transition-ids to "
        "words), words.txt, phones.txt, phones/, num_pdfs, stochasticity.txt, "
        "log/mkgraph.log (sizes and times of LG, CLG, Ha, HCLGa, HCLG).",
        epilog="example: asr-distill mkgraph data/lang_test exp/tri1 exp/tri1/graph",
    )
    p.add_argument("lang_dir")
    p.add_argument("model_dir")
    p.add_argument("graph_dir")
    p.add_argument(
        "--transition-scale", type=float, default=1.0,
        help="scale on transition log-probabilities in H (1.0)",
    )  # fmt: skip
    p.add_argument(
        "--self-loop-scale", type=float, default=0.1,
        help="scale on self-loop log-probabilities (0.1)",
    )  # fmt: skip
    p.add_argument(
        "--rmepsilon", action="store_true",
        help="remove all epsilon arcs of HCLGa (slower, more arcs; default: leave them)",
    )  # fmt: skip
    p.add_argument("--force", action="store_true", help="redo a finished output")
    p.set_defaults(func=_mkgraph)


def _mkgraph(args: argparse.Namespace) -> int:
    make_graph(
        args.lang_dir, args.model_dir, args.graph_dir,
        transition_scale=args.transition_scale, self_loop_scale=args.self_loop_scale,
        rmepsilon=args.rmepsilon, force=args.force,
    )  # fmt: skip
    return 0
