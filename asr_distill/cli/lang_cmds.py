"""Lexicon and lang-dir subcommands: prepare-dict, prepare-lang, validate-lang, make-g."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asr_distill.config import add_config_options, config_from_args
from asr_distill.lang.dictionary import SOURCES, SP_MODEL_TYPES, DictConfig, prepare_dict
from asr_distill.lang.grammar import OOV_POLICIES, GrammarConfig, make_g
from asr_distill.lang.lang_dir import LangConfig, prepare_lang, validate_lang

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare-dict",
        help="Kaldi dict dir (lexicon.txt, phone lists) from CMUdict, a lexicon or subwords",
        description=(
            "Write DICT_DIR (lexicon.txt, silence_phones.txt, optional_silence.txt, "
            "nonsilence_phones.txt, extra_questions.txt, oov_words.txt, config.yaml) for the "
            "words of DATA (a Kaldi data dir, whose 'text' is used, or a 'text' file) and of "
            "--extra-words. Training words without a pronunciation are listed with counts "
            "in oov_words.txt and map to the OOV word (pronounced SPN)."
        ),
        epilog="example: asr-distill prepare-dict data/train data/local/dict --source cmudict",
    )
    p.add_argument("data", help="Kaldi data dir or its 'text' file")
    p.add_argument("dict_dir")
    p.add_argument("--config", help="YAML file of DictConfig options")
    p.add_argument(
        "--extra-words",
        action="append",
        default=[],
        metavar="FILE",
        help="more vocabulary: first field of each line (a word list, words.txt); repeatable",
    )
    p.add_argument(
        "--extra-text",
        action="append",
        default=[],
        metavar="FILE",
        help="more vocabulary: every word of a text file (one sentence a line, e.g. LM "
        "text) or of a Kaldi data dir's text; repeatable",
    )
    add_config_options(p, DictConfig, choices={"source": SOURCES, "sp_model_type": SP_MODEL_TYPES})
    p.add_argument("--force", action="store_true", help="redo a finished output")
    p.set_defaults(func=_prepare_dict)

    p = sub.add_parser(
        "prepare-lang",
        help="Kaldi lang dir (phones.txt, words.txt, topo, L.fst, L_disambig.fst) from a dict dir",
        description="Build LANG_DIR from DICT_DIR like Kaldi's utils/prepare_lang.sh, then "
        "validate it.",
        epilog="example: asr-distill prepare-lang data/local/dict data/lang --sil-prob 0.5",
    )
    p.add_argument("dict_dir")
    p.add_argument("lang_dir")
    p.add_argument("--config", help="YAML file of LangConfig options")
    add_config_options(p, LangConfig)
    p.add_argument("--force", action="store_true", help="redo a finished output")
    p.set_defaults(func=_prepare_lang)

    p = sub.add_parser("validate-lang", help="check a Kaldi lang dir (validate_lang.pl)")
    p.add_argument("lang_dir")
    p.set_defaults(func=_validate_lang)

    p = sub.add_parser(
        "make-g",
        help="G.fst from an ARPA LM (kaldilm), checked against L_disambig",
        description=(
            "Convert LM (ARPA, plain or .gz) to G.fst with the words of LANG_DIR. With "
            "OUT_DIR, LANG_DIR is copied there and G.fst added (like Kaldi's data/lang_test); "
            "without, G.fst is written into LANG_DIR."
        ),
        epilog="example: asr-distill make-g exp/lm_3g/lm.arpa data/lang data/lang_test_3g",
    )
    p.add_argument("lm", help="ARPA file (.gz allowed)")
    p.add_argument("lang_dir")
    p.add_argument("out_dir", nargs="?", default=None, help="copy of LANG_DIR to hold G.fst")
    p.add_argument("--config", help="YAML file of GrammarConfig options")
    add_config_options(p, GrammarConfig, choices={"on_oov": OOV_POLICIES})
    p.add_argument("--force", action="store_true", help="redo a finished output")
    p.set_defaults(func=_make_g)


def _text_path(data: str) -> Path:
    path = Path(data)
    return path / "text" if path.is_dir() else path


def _prepare_dict(args: argparse.Namespace) -> int:
    config = config_from_args(DictConfig, args, args.config)
    prepare_dict(
        _text_path(args.data),
        args.dict_dir,
        config,
        extra_word_lists=args.extra_words,
        extra_texts=args.extra_text,
        force=args.force,
    )
    return 0


def _prepare_lang(args: argparse.Namespace) -> int:
    config = config_from_args(LangConfig, args, args.config)
    prepare_lang(args.dict_dir, args.lang_dir, config, force=args.force)
    return 0


def _validate_lang(args: argparse.Namespace) -> int:
    lang = validate_lang(args.lang_dir)
    log.info(
        "%s: OK (%d phones, %d words, %d disambiguation symbols, %s phones)",
        args.lang_dir,
        len(lang.silence) + len(lang.nonsilence),
        len(lang.words),
        len(lang.disambig),
        "position-dependent" if lang.position_dependent else "position-independent",
    )
    return 0


def _make_g(args: argparse.Namespace) -> int:
    config = config_from_args(GrammarConfig, args, args.config)
    make_g(args.lm, args.lang_dir, args.out_dir, config, force=args.force)
    return 0
