"""Language-model subcommands: train-lm, lm-perplexity."""

from __future__ import annotations

import argparse
import logging

from asr_distill.config import add_config_options, config_from_args
from asr_distill.lang.lm import DEFAULT_UNK, LmConfig, compute_perplexity, train_lm

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-lm",
        help="interpolated modified Kneser-Ney n-gram LM (ARPA) from text",
        description=(
            "Train an n-gram LM with interpolated modified Kneser-Ney smoothing (Chen & "
            "Goodman 1998) on TEXT files (one sentence a line, words separated by spaces) "
            "and write OUT_DIR/lm.arpa, OUT_DIR/config.yaml and OUT_DIR/log/train-lm.log; "
            "with --dev-text also OUT_DIR/perplexity.txt. A finished OUT_DIR is left alone "
            "unless --force."
        ),
        epilog=(
            "example: asr-distill train-lm data/train/text exp/lm_3g --kaldi-text "
            "--order 3 --vocab data/lang/words.txt --dev-text data/dev/text --prune 0,0,1"
        ),
    )
    p.add_argument(
        "text",
        nargs="+",
        help="training text file(s), or Kaldi data dirs (their text, ids dropped)",
    )
    p.add_argument("out_dir", help="output directory")
    p.add_argument("--config", help="YAML file of LmConfig options")
    add_config_options(p, LmConfig)
    p.add_argument(
        "--dev-text",
        action="append",
        default=[],
        help="text or data dir to report perplexity on (OUT_DIR/perplexity.txt); repeatable",
    )
    p.add_argument("--force", action="store_true", help="retrain a finished output")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "lm-perplexity",
        help="perplexity of an ARPA LM on text (like SRILM's ngram -ppl)",
        description=(
            "Score TEXT files (one sentence a line, </s> counted per sentence) with the "
            "ARPA model LM under the backoff rule. OOV words are scored as <unk> when the "
            "model has it (otherwise skipped); their number is reported."
        ),
    )
    p.add_argument("lm", help="ARPA file")
    p.add_argument(
        "text", nargs="+", help="text file(s), or Kaldi data dirs (their text, ids dropped)"
    )
    p.add_argument("--kaldi-text", action="store_true", help="drop the first field of each line")
    p.add_argument("--unk", dest="unk_symbol", default=DEFAULT_UNK, help=f"({DEFAULT_UNK})")
    p.set_defaults(func=_perplexity)


def _train(args: argparse.Namespace) -> int:
    config = config_from_args(LmConfig, args, args.config)
    train_lm(args.text, args.out_dir, config, dev_text_paths=args.dev_text, force=args.force)
    return 0


def _perplexity(args: argparse.Namespace) -> int:
    result = compute_perplexity(
        args.lm, args.text, kaldi_text=args.kaldi_text, unk_symbol=args.unk_symbol
    )
    print(result.format(" ".join(args.text)), end="")
    return 0
