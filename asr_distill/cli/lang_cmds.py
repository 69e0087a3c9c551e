"""Lexicon and lang-dir subcommands: prepare-dict, prepare-lang, validate-lang, make-g."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asr_distill.config import load_config
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
    p.add_argument("--source", choices=SOURCES, default=None, help="default: cmudict")
    p.add_argument(
        "--lexicon",
        default=None,
        help="lexicon file 'WORD PH1 PH2 ...' for --source lexicon (e.g. librispeech-lexicon.txt)",
    )
    p.add_argument(
        "--keep-stress",
        action="store_true",
        default=None,
        help="keep trailing digits of phones (CMU stress marks); default: strip them",
    )
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
    p.add_argument("--oov", dest="oov_word", default=None, help="OOV word (<UNK>)")
    p.add_argument("--sp-model-type", choices=SP_MODEL_TYPES, default=None, help="(unigram)")
    p.add_argument("--sp-vocab-size", type=int, default=None, help="sentencepiece pieces (500)")
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
    p.add_argument("--oov", dest="oov_word", default=None, help="OOV word, in the lexicon (<UNK>)")
    p.add_argument(
        "--no-position-dependent-phones",
        dest="position_dependent_phones",
        action="store_false",
        default=None,
        help="no _B/_E/_I/_S word-position phone variants",
    )
    p.add_argument("--sil-prob", type=float, default=None, help="optional silence prob (0.5)")
    p.add_argument("--num-sil-states", type=int, default=None, help="(5)")
    p.add_argument("--num-nonsil-states", type=int, default=None, help="(3)")
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
    p.add_argument("--arpa-unk", default=None, help="the ARPA's unknown-word symbol (<unk>)")
    p.add_argument(
        "--on-oov", choices=OOV_POLICIES, default=None, help="ARPA words not in words.txt (skip)"
    )
    p.add_argument(
        "--full-compose-max-arcs",
        type=int,
        default=None,
        metavar="N",
        help="check by building all of L_disambig∘G when G has <= N arcs (2000000), else "
        "by composing L_disambig with G's best path; 0: never",
    )
    p.add_argument("--max-order", type=int, default=None, help="use n-grams up to this order")
    p.add_argument("--force", action="store_true", help="redo a finished output")
    p.set_defaults(func=_make_g)


def _text_path(data: str) -> Path:
    path = Path(data)
    return path / "text" if path.is_dir() else path


def _prepare_dict(args: argparse.Namespace) -> int:
    config = load_config(
        DictConfig,
        args.config,
        source=args.source,
        lexicon=args.lexicon,
        keep_stress=args.keep_stress,
        oov_word=args.oov_word,
        sp_model_type=args.sp_model_type,
        sp_vocab_size=args.sp_vocab_size,
    )
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
    config = load_config(
        LangConfig,
        args.config,
        oov_word=args.oov_word,
        position_dependent_phones=args.position_dependent_phones,
        sil_prob=args.sil_prob,
        num_sil_states=args.num_sil_states,
        num_nonsil_states=args.num_nonsil_states,
    )
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
    config = load_config(
        GrammarConfig,
        args.config,
        arpa_unk=args.arpa_unk,
        on_oov=args.on_oov,
        full_compose_max_arcs=args.full_compose_max_arcs,
        max_order=args.max_order,
    )
    make_g(args.lm, args.lang_dir, args.out_dir, config, force=args.force)
    return 0
