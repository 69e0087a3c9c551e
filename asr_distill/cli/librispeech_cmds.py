"""LibriSpeech subcommands: prepare-librispeech, download-librispeech-lm."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asr_distill.data.librispeech import (
    DEFAULT_URL_BASE,
    LM_FILES,
    MIRRORS,
    SUBSETS,
    download_lm_files,
    prepare_librispeech,
)

log = logging.getLogger(__name__)

_MIRROR_HELP = ", ".join(MIRRORS.values())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare-librispeech",
        help="LibriSpeech(-layout) subset -> Kaldi data dir (optionally downloading it first)",
        description=(
            "Read CORPUS_DIR/LibriSpeech/SUBSET or CORPUS_DIR/SUBSET "
            "(<spk>/<chapter>/<spk>-<chapter>-<n>.flac + <spk>-<chapter>.trans.txt) and write "
            "the Kaldi data dir OUT (wav.scp with absolute .flac paths, text, utt2spk, "
            "spk2utt, utt2dur). With --download the official archive is fetched first "
            "(resumable, checksum-verified) and safely extracted into CORPUS_DIR. The "
            "synthetic corpus has the same layout (subsets train, dev, test). Bad utterances "
            "are errors naming the file and line, or with --skip-bad are listed in "
            "OUT/skipped.txt. A finished OUT is left alone unless --force."
        ),
        epilog=(
            "example: asr-distill prepare-librispeech --corpus-dir corpora --subset dev-clean "
            "--out data/dev_clean --download"
        ),
    )
    p.add_argument(
        "--corpus-dir",
        required=True,
        type=Path,
        help="directory holding LibriSpeech/<subset> or <subset>",
    )
    p.add_argument(
        "--subset", required=True, help=f"subset name; downloadable: {', '.join(SUBSETS)}"
    )
    p.add_argument("--out", required=True, type=Path, help="Kaldi data dir to write")
    p.add_argument(
        "--download",
        action="store_true",
        help="download and extract the subset's archive into --corpus-dir first",
    )
    p.add_argument(
        "--download-dir",
        type=Path,
        default=None,
        help="where archives are kept (default: --corpus-dir)",
    )
    p.add_argument(
        "--url-base",
        default=DEFAULT_URL_BASE,
        help="OpenSLR resource root or mirror; a file's URL is "
        f"URL_BASE/<resource-id>/<file> (default: %(default)s; mirrors: "
        f"{_MIRROR_HELP})",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip bad utterances (listed with reasons in OUT/skipped.txt)",
    )
    p.add_argument("--force", action="store_true", help="redo a finished OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_prepare)

    p = sub.add_parser(
        "download-librispeech-lm",
        help="download LibriSpeech lexicon/vocabulary/LM files (OpenSLR 11), checksum-verified",
    )
    p.add_argument("--dir", required=True, type=Path, help="directory to download into")
    p.add_argument(
        "--files",
        nargs="+",
        choices=sorted(LM_FILES),
        default=["librispeech-lexicon.txt", "3-gram.pruned.1e-7.arpa.gz"],
        help="files to fetch (default: %(default)s)",
    )
    p.add_argument(
        "--url-base",
        default=DEFAULT_URL_BASE,
        help="OpenSLR resource root or mirror (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_download_lm)


def _prepare(args: argparse.Namespace) -> int:
    summary = prepare_librispeech(
        args.corpus_dir,
        args.subset,
        args.out,
        download=args.download,
        download_dir=args.download_dir,
        url_base=args.url_base,
        skip_bad=args.skip_bad,
        force=args.force,
        progress=not args.no_progress,
    )
    if not summary.already_done:
        log.info(
            "prepare-librispeech: %d utterances, %d speakers, %.2f h, %d skipped -> %s",
            summary.num_utterances,
            summary.num_speakers,
            summary.hours,
            summary.num_skipped,
            summary.out_dir,
        )
    return 0


def _download_lm(args: argparse.Namespace) -> int:
    paths = download_lm_files(
        args.files, args.dir, url_base=args.url_base, progress=not args.no_progress
    )
    log.info("downloaded %d file(s) into %s", len(paths), args.dir)
    return 0
