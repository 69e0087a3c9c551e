"""LibriSpeech: the official archives (with checksums), download, and the corpus parser.

The parser reads the LibriSpeech layout::

    <root>/[LibriSpeech/]<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
    <root>/[LibriSpeech/]<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt

(one ``<utt-id> <WORDS...>`` line per utterance) and writes a Kaldi data
directory: ``wav.scp`` (absolute ``.flac`` paths, read later with soundfile),
``text``, ``utt2spk`` (speaker = ``<spk>``), ``spk2utt`` and ``utt2dur``. The
offline synthetic corpus uses the same layout (subsets ``train``, ``dev``,
``test``), so it is read by the same code. Speaker and chapter come from the
directory names, so they may contain ``-``.

Checksums (sha256 from torchaudio's ``datasets/librispeech.py``; md5 as
published in OpenSLR's ``md5sum.txt`` files, as found in PaddleSpeech's
``dataset/librispeech``/``dataset/mini_librispeech`` and sdrobert's
``pytorch-database-prep``) are verified on every download.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from asr_distill.data.download import Checksum, download_file, extract_tar, extraction_marker
from asr_distill.data.kaldi_dir import DataDir, read_data_dir, validate_data_dir, write_data_dir
from asr_distill.errors import InputError
from asr_distill.io import atomic_open, is_done
from asr_distill.io.step import step_log

log = logging.getLogger(__name__)

DEFAULT_URL_BASE = "https://www.openslr.org/resources"
"""OpenSLR's resource root; a file's URL is ``<url_base>/<resource-id>/<file name>``."""

MIRRORS = {
    "us": "https://us.openslr.org/resources",
    "eu": "https://openslr.elda.org/resources",
    "cn": "https://openslr.magicdatatech.com/resources",
}
"""OpenSLR mirrors with the same ``<base>/<resource-id>/<file>`` layout."""

SAMPLE_RATE_HZ = 16000
ARCHIVE_ROOT = "LibriSpeech"
"""Top directory inside every LibriSpeech tarball."""


@dataclasses.dataclass(frozen=True)
class Resource:
    """One downloadable OpenSLR file: its name, resource id and expected checksums."""

    filename: str
    openslr_id: int
    checksums: tuple[Checksum, ...]

    def url(self, url_base: str = DEFAULT_URL_BASE) -> str:
        return f"{url_base.rstrip('/')}/{self.openslr_id}/{self.filename}"


def _md5(digest: str) -> Checksum:
    return Checksum("md5", digest)


def _sha256(digest: str) -> Checksum:
    return Checksum("sha256", digest)


# OpenSLR resource 12 (full LibriSpeech) and 31 (mini LibriSpeech).
SUBSETS: dict[str, Resource] = {
    "dev-clean": Resource(
        "dev-clean.tar.gz",
        12,
        (
            _sha256("76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3"),
            _md5("42e2234ba48799c1f50f24a7926300a1"),
        ),
    ),
    "dev-other": Resource(
        "dev-other.tar.gz",
        12,
        (
            _sha256("12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365"),
            _md5("c8d0bcc9cca99d4f8b62fcc847357931"),
        ),
    ),
    "test-clean": Resource(
        "test-clean.tar.gz",
        12,
        (
            _sha256("39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23"),
            _md5("32fa31d27d2e1cad72775fee3f4849a9"),
        ),
    ),
    "test-other": Resource(
        "test-other.tar.gz",
        12,
        (
            _sha256("d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29"),
            _md5("fb5a50374b501bb3bac4815ee91d3135"),
        ),
    ),
    "train-clean-100": Resource(
        "train-clean-100.tar.gz",
        12,
        (
            _sha256("d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2"),
            _md5("2a93770f6d5c6c964bc36631d331a522"),
        ),
    ),
    "train-clean-360": Resource(
        "train-clean-360.tar.gz",
        12,
        (
            _sha256("146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf"),
            _md5("c0e676e450a7ff2f54aeade5171606fa"),
        ),
    ),
    "train-other-500": Resource(
        "train-other-500.tar.gz",
        12,
        (
            _sha256("ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2"),
            _md5("d1a0fd59409feb2c614ce4d30c387708"),
        ),
    ),
    "train-clean-5": Resource(
        "train-clean-5.tar.gz", 31, (_md5("5df7d4e78065366204ca6845bb08f490"),)
    ),
    "dev-clean-2": Resource("dev-clean-2.tar.gz", 31, (_md5("6d7ab67ac6a1d2c993d050e16d61080d"),)),
}

# OpenSLR resource 11: lexicon, vocabulary and n-gram LMs.
LM_FILES: dict[str, Resource] = {
    "librispeech-lexicon.txt": Resource(
        "librispeech-lexicon.txt", 11, (_md5("28f72663f6bfed7cd346283c064c315b"),)
    ),
    "librispeech-vocab.txt": Resource(
        "librispeech-vocab.txt", 11, (_md5("bf3cc7a50112831ed8b0afa40cae96a5"),)
    ),
    "3-gram.pruned.1e-7.arpa.gz": Resource(
        "3-gram.pruned.1e-7.arpa.gz", 11, (_md5("9a0f1325bcaf3a0f7b7be4be10823c2a"),)
    ),
    "3-gram.pruned.3e-7.arpa.gz": Resource(
        "3-gram.pruned.3e-7.arpa.gz", 11, (_md5("8f67ec741827742eee05799ab7605b50"),)
    ),
    "3-gram.arpa.gz": Resource("3-gram.arpa.gz", 11, (_md5("74cbb837e582378c26c602e1c8cbcb9c"),)),
    "4-gram.arpa.gz": Resource("4-gram.arpa.gz", 11, (_md5("6abdcd5b055bd482e4f9defe91d40408"),)),
    "librispeech-lm-norm.txt.gz": Resource(
        "librispeech-lm-norm.txt.gz", 11, (_md5("c83c64c726a1aedfe65f80aa311de402"),)
    ),
}


# --------------------------------------------------------------------------- download


def download_subset(
    subset: str,
    corpus_dir: str | Path,
    *,
    download_dir: str | Path | None = None,
    url_base: str = DEFAULT_URL_BASE,
    resource: Resource | None = None,
    progress: bool = True,
) -> Path:
    """Download ``subset``'s archive (checksum-verified) and extract it into ``corpus_dir``.

    The archive goes to ``download_dir`` (default ``corpus_dir``) and unpacks to
    ``<corpus_dir>/LibriSpeech/<subset>``; both steps are skipped when already
    done (once extracted, the archive may be deleted: it is not fetched again).
    ``resource`` overrides the built-in table entry (a private mirror with its own
    archives). Returns the subset directory.
    """
    if resource is None:
        if subset not in SUBSETS:
            raise InputError(f"unknown LibriSpeech subset {subset!r}; known: {', '.join(SUBSETS)}")
        resource = SUBSETS[subset]
    corpus_dir = Path(corpus_dir)
    if is_done(corpus_dir, extraction_marker(resource.filename)):
        log.info("%s was already downloaded and extracted into %s", resource.filename, corpus_dir)
        return find_subset_dir(corpus_dir, subset)
    download_dir = corpus_dir if download_dir is None else Path(download_dir)
    archive = download_file(
        resource.url(url_base),
        download_dir / resource.filename,
        resource.checksums,
        progress=progress,
    )
    extract_tar(archive, corpus_dir, progress=progress)
    return find_subset_dir(corpus_dir, subset)


def download_lm_files(
    names: list[str] | tuple[str, ...],
    dest_dir: str | Path,
    *,
    url_base: str = DEFAULT_URL_BASE,
    progress: bool = True,
) -> list[Path]:
    """Download OpenSLR resource-11 files (see :data:`LM_FILES`) into ``dest_dir``."""
    unknown = [n for n in names if n not in LM_FILES]
    if unknown:
        raise InputError(f"unknown LibriSpeech LM file(s) {unknown}; known: {', '.join(LM_FILES)}")
    dest_dir = Path(dest_dir)
    return [
        download_file(
            LM_FILES[n].url(url_base), dest_dir / n, LM_FILES[n].checksums, progress=progress
        )
        for n in names
    ]


def find_subset_dir(corpus_dir: str | Path, subset: str) -> Path:
    """``<corpus_dir>/LibriSpeech/<subset>`` or ``<corpus_dir>/<subset>``, whichever exists."""
    corpus_dir = Path(corpus_dir)
    candidates = [corpus_dir / ARCHIVE_ROOT / subset, corpus_dir / subset]
    found = [c for c in candidates if c.is_dir()]
    if not found:
        raise InputError(
            f"no directory for subset {subset!r}: looked for "
            f"{' and '.join(str(c) for c in candidates)}",
            corpus_dir,
        )
    if len(found) > 1:
        raise InputError(
            f"subset {subset!r} is ambiguous: both {found[0]} and {found[1]} exist", corpus_dir
        )
    return found[0]


# --------------------------------------------------------------------------- parser


@dataclasses.dataclass(frozen=True)
class SkippedUtterance:
    """One utterance (or transcript line) left out with ``skip_bad``, and why."""

    key: str
    reason: str
    path: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{self.key} {self.reason} [{where}]"


@dataclasses.dataclass
class ParsedCorpus:
    """What :func:`parse_librispeech_dir` found: a data dir and what it left out."""

    data: DataDir
    skipped: list[SkippedUtterance]


class _Problems:
    """Raise on the first problem, or (``skip_bad``) collect them."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.skipped: list[SkippedUtterance] = []

    def report(self, key: str, reason: str, path: Path, line: int | None = None) -> None:
        if not self.skip_bad:
            raise InputError(f"{reason} (utterance {key}); --skip-bad skips it", path, line)
        self.skipped.append(SkippedUtterance(key, reason, str(path), line))


@dataclasses.dataclass
class _Line:
    text: str
    line: int


def _read_transcript(
    trans: Path, prefix: str, problems: _Problems
) -> tuple[dict[str, _Line], set[str]]:
    """Good lines of one chapter transcript, and every utterance id it names (good or bad)."""
    entries: dict[str, _Line] = {}
    first_line: dict[str, int] = {}  # every utterance id named, good line or bad
    duplicates: dict[str, list[int]] = {}
    with open(trans, "rb") as f:
        raw_lines = f.read().split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the newline that ends the last line
    for lineno, raw in enumerate(raw_lines, start=1):
        raw = raw.rstrip(b"\r")
        fields = raw.split(maxsplit=1)
        if not fields:
            problems.report(f"{trans.name}:{lineno}", "empty transcript line", trans, lineno)
            continue
        utt = fields[0].decode("utf-8", "replace")
        if utt in first_line:
            entries.pop(utt, None)
            lines = duplicates.setdefault(utt, [first_line[utt]])
            lines.append(lineno)
            if not problems.skip_bad:
                problems.report(
                    utt, f"duplicate utterance id (first on line {lines[0]})", trans, lineno
                )
            continue
        first_line[utt] = lineno
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.report(
                utt,
                f"transcript line is not valid UTF-8 ({e.reason} at byte {e.start})",
                trans,
                lineno,
            )
            continue
        parts = line.split(maxsplit=1)
        if len(parts) < 2:
            problems.report(
                utt, "malformed transcript line: no words after the utterance id", trans, lineno
            )
            continue
        if not utt.startswith(prefix) or len(utt) == len(prefix):
            problems.report(
                utt,
                f"malformed transcript line: utterance id must look like '{prefix}<n>'",
                trans,
                lineno,
            )
            continue
        entries[utt] = _Line(" ".join(parts[1].split()), lineno)
    for utt, lines in duplicates.items():
        problems.report(
            utt,
            "duplicate utterance id on lines " + ", ".join(str(n) for n in lines),
            trans,
            lines[-1],
        )
    named = set(first_line)
    return entries, named


def _audio_problem(path: Path) -> tuple[str | None, float]:
    """(reason the audio is unusable or None, duration in seconds)."""
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        detail = getattr(e, "error_string", None) or str(e).strip() or type(e).__name__
        return f"unreadable audio ({detail})", 0.0
    if info.frames <= 0:
        return "audio has no samples", 0.0
    if info.samplerate != SAMPLE_RATE_HZ:
        return f"sample rate is {info.samplerate} Hz, LibriSpeech must be {SAMPLE_RATE_HZ}", 0.0
    if info.channels != 1:
        return f"audio has {info.channels} channels, LibriSpeech must be mono", 0.0
    try:  # the header's length: a truncated FLAC fails to seek to its last samples
        with sf.SoundFile(str(path)) as f:
            f.seek(max(info.frames - 160, 0))
            tail = f.read(160, dtype="int16")
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        return f"truncated or corrupt audio (its end cannot be read: {e})", 0.0
    if len(tail) < min(160, info.frames):
        return "truncated audio (fewer samples than its header says)", 0.0
    return None, info.frames / info.samplerate


def _chapter_dirs(subset_dir: Path) -> list[tuple[str, str, Path]]:
    out = []
    for spk_dir in sorted(subset_dir.iterdir()):
        if not spk_dir.is_dir() or spk_dir.name.startswith("."):
            continue
        for chapter_dir in sorted(spk_dir.iterdir()):
            if chapter_dir.is_dir() and not chapter_dir.name.startswith("."):
                out.append((spk_dir.name, chapter_dir.name, chapter_dir))
    return out


def parse_librispeech_dir(
    subset_dir: str | Path, *, skip_bad: bool = False, progress: bool = True
) -> ParsedCorpus:
    """Read one subset directory (``<subset>/<spk>/<chapter>/...``) into a :class:`DataDir`.

    Every utterance needs a transcript line and a readable 16 kHz mono FLAC file.
    Problems (transcript line without audio, audio without transcript line,
    duplicate utterance ids, non-UTF-8 or malformed transcript lines, unreadable,
    empty, non-16 kHz or non-mono audio, audio that a symbolic link puts outside the
    corpus dir) raise :class:`InputError` naming the file
    (and line); with ``skip_bad`` the utterance is left out and listed in
    :attr:`ParsedCorpus.skipped` instead. Raises :class:`InputError` if no
    utterance is left.
    """
    subset_dir = Path(subset_dir).absolute()
    if not subset_dir.is_dir():
        raise InputError("not a directory", subset_dir)
    problems = _Problems(skip_bad)
    # Audio must stay inside the corpus: <root>/[LibriSpeech/]<subset>'s parent.
    root = subset_dir.resolve().parent
    wav_scp: dict[str, str] = {}
    text: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    utt2dur: dict[str, float] = {}
    chapters = _chapter_dirs(subset_dir)
    for spk, chapter, chapter_dir in tqdm(
        chapters, desc=f"parse {subset_dir.name}", unit="chapter", disable=not progress, leave=False
    ):
        prefix = f"{spk}-{chapter}-"
        trans = chapter_dir / f"{spk}-{chapter}.trans.txt"
        audio = {
            p.name[: -len(".flac")]: p
            for p in chapter_dir.iterdir()
            if p.name.endswith(".flac") and p.is_file()
        }
        entries: dict[str, _Line] = {}
        named: set[str] = set()
        if trans.is_file():
            entries, named = _read_transcript(trans, prefix, problems)
        for utt, entry in entries.items():
            if utt not in audio:
                problems.report(
                    utt, f"transcript line has no audio file {utt}.flac", trans, entry.line
                )
                continue
            reason, duration = _audio_problem(audio[utt])
            real = audio[utt].resolve()
            if not real.is_relative_to(root):  # a symlink out of the corpus
                reason = f"audio resolves outside the corpus dir {root} (to {real})"
            if reason is not None:
                problems.report(utt, reason, audio[utt])
                continue
            wav_scp[utt] = str(audio[utt])
            text[utt] = entry.text
            utt2spk[utt] = spk
            utt2dur[utt] = duration
        for utt in sorted(set(audio) - named):
            where = (
                "no transcript file " + str(trans)
                if not trans.is_file()
                else f"no line for it in {trans}"
            )
            problems.report(utt, f"audio file has no transcript ({where})", audio[utt])
    if not utt2spk:
        raise InputError(
            f"no usable utterances found ({len(problems.skipped)} skipped)", subset_dir
        )
    data = DataDir(wav_scp=wav_scp, text=text, utt2spk=utt2spk, utt2dur=utt2dur)
    return ParsedCorpus(data, problems.skipped)


# --------------------------------------------------------------------------- the step

SKIPPED_FILE = "skipped.txt"
_STALE_FILES = ("segments", "feats.scp", "cmvn.scp", "spk2gender", "reco2dur")


@dataclasses.dataclass(frozen=True)
class PrepareSummary:
    """What :func:`prepare_librispeech` did."""

    out_dir: Path
    num_utterances: int
    num_speakers: int
    hours: float
    num_skipped: int
    already_done: bool = False


def prepare_librispeech(
    corpus_dir: str | Path,
    subset: str,
    out_dir: str | Path,
    *,
    download: bool = False,
    download_dir: str | Path | None = None,
    url_base: str = DEFAULT_URL_BASE,
    skip_bad: bool = False,
    force: bool = False,
    progress: bool = True,
) -> PrepareSummary:
    """Make the Kaldi data dir ``out_dir`` from one LibriSpeech(-layout) subset.

    Args:
        corpus_dir: holds ``LibriSpeech/<subset>`` (an unpacked tarball) or ``<subset>``.
        subset: e.g. ``dev-clean``, ``train-clean-5`` or, for the synthetic corpus, ``dev``.
        out_dir: the data directory to write (``wav.scp text utt2spk spk2utt utt2dur``).
        download: first download (checksum-verified) and extract the official archive
            into ``corpus_dir``; only for the subsets in :data:`SUBSETS`.
        download_dir: where archives are kept (default ``corpus_dir``).
        url_base: OpenSLR resource root or a mirror (default :data:`DEFAULT_URL_BASE`).
        skip_bad: leave out bad utterances, listing them in ``<out_dir>/skipped.txt``,
            instead of failing (default False).
        force: redo a finished step (default False: a done ``out_dir`` is a no-op).
        progress: show progress bars.

    The output is checked with :func:`validate_data_dir` before the done marker is written.
    """
    out_dir = Path(out_dir)
    settings = {"corpus_dir": str(corpus_dir), "subset": subset, "download": download,
                "skip_bad": skip_bad}  # fmt: skip
    with step_log(out_dir, "prepare-librispeech.log", force=force, config=settings) as run:
        if not run:
            data = read_data_dir(out_dir)
            skipped = out_dir / SKIPPED_FILE
            num_skipped = len(skipped.read_text().splitlines()) if skipped.is_file() else 0
            hours = sum(data.utt2dur.values()) / 3600 if data.utt2dur else 0.0
            return PrepareSummary(out_dir, len(data.utt2spk), len(data.spk2utt), hours,
                                  num_skipped, already_done=True)  # fmt: skip

        if download:
            subset_dir = download_subset(subset, corpus_dir, download_dir=download_dir,
                                         url_base=url_base, progress=progress)  # fmt: skip
        else:
            subset_dir = find_subset_dir(corpus_dir, subset)
        parsed = parse_librispeech_dir(subset_dir, skip_bad=skip_bad, progress=progress)

        for name in _STALE_FILES:
            stale = out_dir / name
            if stale.is_file():
                log.warning("removing %s left over from an earlier run", stale)
                stale.unlink()
        write_data_dir(parsed.data, out_dir)
        skipped_path = out_dir / SKIPPED_FILE
        if parsed.skipped:
            with atomic_open(skipped_path) as f:
                for item in parsed.skipped:
                    f.write(f"{item}\n")
            log.warning(
                "skipped %d bad utterance(s) of %s; see %s",
                len(parsed.skipped),
                subset_dir,
                skipped_path,
            )
        else:
            with contextlib.suppress(FileNotFoundError):
                skipped_path.unlink()
        data = validate_data_dir(out_dir, require_utt2dur=True)
        hours = sum(data.utt2dur.values()) / 3600 if data.utt2dur else 0.0
        log.info(
            "%s: %d utterances, %d speakers, %.2f h from %s",
            out_dir,
            len(data.utt2spk),
            len(data.spk2utt),
            hours,
            subset_dir,
        )
        return PrepareSummary(out_dir, len(data.utt2spk), len(data.spk2utt), hours,
                              len(parsed.skipped))  # fmt: skip
