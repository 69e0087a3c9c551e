"""The ``asr-distill`` command line: one subcommand per recipe step.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``, which adds
its subcommands; a subcommand parses arguments and calls one public library
function (logic lives in the library, not here).
"""

from __future__ import annotations

import argparse
import logging
import sys

from asr_distill import __version__
from asr_distill.cli import (
    data_cmds,
    decode_cmds,
    distill_cmds,
    feature_cmds,
    framestore_cmds,
    graph_cmds,
    hmm_cmds,
    lang_cmds,
    librispeech_cmds,
    lm_cmds,
    nnet_cmds,
    report_cmds,
    soft_target_cmds,
    synth_cmds,
)
from asr_distill.errors import InputError
from asr_distill.logging_setup import setup_logging

COMMAND_MODULES = (
    data_cmds,
    decode_cmds,
    distill_cmds,
    feature_cmds,
    framestore_cmds,
    graph_cmds,
    hmm_cmds,
    lang_cmds,
    librispeech_cmds,
    lm_cmds,
    nnet_cmds,
    report_cmds,
    soft_target_cmds,
    synth_cmds,
)

log = logging.getLogger("asr_distill")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-distill",
        description="Knowledge distillation for hybrid DNN-HMM speech recognisers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="<step>", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(verbose=args.verbose)
    try:
        result = args.func(args)
    except InputError as e:
        log.error("%s", e)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
