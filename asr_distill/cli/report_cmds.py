"""The report subcommand."""

from __future__ import annotations

import argparse

from asr_distill.report.report import make_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="the paper's Table 1, temperature sweep and Table 5 (Markdown, CSV, PNG)",
        description="Read EXP_DIR (a recipe's exp dir: dnn/, ensemble/, distill_T<T>/, "
        "small_hard/, small_soft/) and write OUT_DIR/report.md with table1, temperature "
        "and table5 as .md and .csv, and PNG plots. Missing inputs show as '-' and are "
        "listed. The report is also printed.",
        epilog="example: asr-distill report exp/synth/exp exp/synth/report",
    )
    p.add_argument("exp_dir")
    p.add_argument("out_dir")
    p.add_argument("--temperatures", default="1,2,5,10", help="(1,2,5,10)")
    p.add_argument("--title", default="asr-distill report")
    p.add_argument("--context", default="", help="a line on the data, machine and preset")
    p.add_argument(
        "--student-seeds", type=int, default=None,
        help="seeds each distilled row was trained with (dirs <student>_seed1..N-1); "
        "default: every seed dir found",
    )  # fmt: skip
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    temps = [float(t) for t in args.temperatures.replace(",", " ").split()]
    print(make_report(args.exp_dir, args.out_dir, temperatures=temps, title=args.title,
                      context=args.context, student_seeds=args.student_seeds))  # fmt: skip
    return 0
