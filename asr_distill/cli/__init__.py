"""The ``asr-distill`` command line: one subcommand per recipe step.

Each module named in :data:`COMMANDS` exposes ``register(subparsers)``, which adds
its subcommands; a subcommand parses arguments and calls one public library
function (logic lives in the library, not here).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from asr_distill import __version__
from asr_distill.errors import InputError
from asr_distill.logging_setup import setup_logging

# Subcommand -> the module under asr_distill.cli that registers it. A call imports only
# its own module (most steps need no torch: its import costs 2 s, and a recipe makes
# about a hundred calls); --help and unknown commands import them all.
COMMANDS = {
    "validate-data-dir": "data_cmds", "split-data-dir": "data_cmds",
    "perturb-data-dir": "data_cmds", "combine-data-dirs": "data_cmds",
    "decode": "decode_cmds", "score": "decode_cmds", "frame-accuracy": "decode_cmds",
    "lm-rescore": "decode_cmds",
    "train-ensemble": "distill_cmds", "ensemble-accuracy": "distill_cmds",
    "distill": "distill_cmds",
    "compute-feats": "feature_cmds",
    "make-frame-store": "framestore_cmds",
    "mkgraph": "graph_cmds",
    "train-mono": "hmm_cmds", "align": "hmm_cmds", "convert-ali": "hmm_cmds",
    "build-tree": "hmm_cmds",
    "train-tri": "hmm_cmds", "train-lda-mllt": "hmm_cmds", "train-sat": "hmm_cmds",
    "prepare-dict": "lang_cmds", "prepare-lang": "lang_cmds", "validate-lang": "lang_cmds",
    "make-g": "lang_cmds",
    "prepare-librispeech": "librispeech_cmds", "download-librispeech-lm": "librispeech_cmds",
    "train-lm": "lm_cmds", "lm-perplexity": "lm_cmds",
    "train-dnn": "nnet_cmds", "curve-summary": "nnet_cmds",
    "report": "report_cmds",
    "make-soft-targets": "soft_target_cmds",
    "make-synth-corpus": "synth_cmds",
    "cluster-senones": "specialist_cmds", "train-specialists": "specialist_cmds",
    "specialist-accuracy": "specialist_cmds",
}  # fmt: skip

log = logging.getLogger("asr_distill")


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in argv (the first argument that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of ``command``'s module alone."""
    parser = argparse.ArgumentParser(
        prog="asr-distill",
        description="Knowledge distillation for hybrid DNN-HMM speech recognisers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="<step>", required=True)
    names = [COMMANDS[command]] if command in COMMANDS else dict.fromkeys(COMMANDS.values())
    for name in names:
        importlib.import_module(f"asr_distill.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command_of(argv)).parse_args(argv)
    setup_logging(verbose=args.verbose)
    finished = False
    try:
        result = args.func(args)
        finished = True
    except InputError as e:
        log.error("%s", e, exc_info=args.verbose)
        return 1
    except OSError as e:  # permission denied, no space left, a file where a dir goes, ...
        where = f"{e.filename}: " if e.filename else ""
        log.error("%s%s (%s)", where, e.strerror or e, type(e).__name__, exc_info=args.verbose)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    finally:
        _end_distributed(together=finished)
    return int(result or 0)


def _end_distributed(together: bool) -> None:
    """Destroy a torchrun process group the step made: left to the interpreter's exit,
    gloo's threads can abort a rank (SIGABRT) after the run has finished. After a step
    that finished on every rank, the ranks first meet at a barrier, so none tears down
    its group while another still talks to it (rank 1 of the FitNets torchrun test once
    aborted after its run); after an error, no barrier (the other ranks may be gone)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
