"""Kaldi data directories: read, write, validate and split.

A data directory holds ``wav.scp`` (recording-id -> rxfilename), ``text``
(utt-id -> transcript), ``utt2spk``, ``spk2utt`` and optionally ``segments``
(utt-id recording-id start end, seconds), ``utt2dur``, ``feats.scp`` and
``cmvn.scp``. All files are sorted in C-locale order (byte order of UTF-8, which
equals Python's code-point order) with unique keys, as Kaldi's
``utils/validate_data_dir.sh`` demands. Utterance ids are expected to start with
their speaker id, so that sorting by utterance also sorts by speaker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from asr_distill.errors import InputError
from asr_distill.io import atomic_open
from asr_distill.io.text import utf8_lines


@dataclasses.dataclass(frozen=True)
class Segment:
    """One line of ``segments``: a region of a recording, in seconds."""

    recording: str
    start_s: float
    end_s: float


@dataclasses.dataclass
class DataDir:
    """The contents of a Kaldi data directory, keyed by id (kept sorted on write)."""

    wav_scp: dict[str, str]
    text: dict[str, str]
    utt2spk: dict[str, str]
    segments: dict[str, Segment] | None = None
    utt2dur: dict[str, float] | None = None
    feats_scp: dict[str, str] | None = None
    cmvn_scp: dict[str, str] | None = None

    @property
    def utt_ids(self) -> list[str]:
        return sorted(self.utt2spk)

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for utt in sorted(self.utt2spk):
            out.setdefault(self.utt2spk[utt], []).append(utt)
        return dict(sorted(out.items()))

    def recording_of(self, utt: str) -> str:
        """The recording id holding ``utt`` (itself when there are no segments)."""
        if self.segments is not None:
            return self.segments[utt].recording
        return utt

    def subset(self, utts: Iterable[str]) -> DataDir:
        """A new DataDir restricted to ``utts`` (and the recordings/speakers they use)."""
        keep = set(utts)
        unknown = keep - set(self.utt2spk)
        if unknown:
            raise KeyError(f"unknown utterance ids: {sorted(unknown)[:5]}")

        def pick(d: dict | None, keys: set[str]) -> dict | None:
            return None if d is None else {k: v for k, v in d.items() if k in keys}

        recs = {self.recording_of(u) for u in keep}
        spks = {self.utt2spk[u] for u in keep}
        return DataDir(
            wav_scp=pick(self.wav_scp, recs),
            text=pick(self.text, keep),
            utt2spk=pick(self.utt2spk, keep),
            segments=pick(self.segments, keep),
            utt2dur=pick(self.utt2dur, keep),
            feats_scp=pick(self.feats_scp, keep),
            cmvn_scp=pick(self.cmvn_scp, spks),
        )


def read_table(path: str | Path, *, allow_empty_value: bool = False) -> dict[str, str]:
    """Read a Kaldi ``key value`` table; the value is the rest of the line, stripped.

    Raises :class:`InputError` naming the file and line for undecodable bytes, a
    missing value or a duplicate key.
    """
    path = Path(path)
    out: dict[str, str] = {}
    for lineno, line in utf8_lines(path):
        if not line.strip():
            raise InputError("empty line", path, lineno)
        parts = line.strip().split(maxsplit=1)
        key = parts[0]
        value = parts[1].strip() if len(parts) > 1 else ""
        if not value and not allow_empty_value:
            raise InputError(f"no value for key {key!r}", path, lineno)
        if key in out:
            raise InputError(f"duplicate key {key!r}", path, lineno)
        out[key] = value
    return out


def write_table(path: str | Path, table: dict[str, object]) -> None:
    """Write a ``key value`` table sorted in C-locale order, atomically."""
    with atomic_open(path) as f:
        for key in sorted(table):
            f.write(f"{key} {table[key]}\n")


def _read_segments(path: Path) -> dict[str, Segment]:
    out: dict[str, Segment] = {}
    for lineno, (utt, rest) in enumerate(read_table(path).items(), start=1):
        fields = rest.split()
        if len(fields) != 3:
            raise InputError("expected 'utt rec start end'", path, lineno)
        try:
            start, end = float(fields[1]), float(fields[2])
        except ValueError:
            raise InputError("start/end are not numbers", path, lineno) from None
        if not 0 <= start < end and not (end == -1 and start >= 0):
            raise InputError(f"bad segment times {start} {end}", path, lineno)
        out[utt] = Segment(fields[0], start, end)
    return out


def _read_floats(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for lineno, (key, value) in enumerate(read_table(path).items(), start=1):
        try:
            out[key] = float(value)
        except ValueError:
            raise InputError(f"not a number: {value!r}", path, lineno) from None
    return out


def read_data_dir(path: str | Path) -> DataDir:
    """Read a Kaldi data directory (``wav.scp``, ``text``, ``utt2spk`` required)."""
    path = Path(path)
    for name in ("wav.scp", "text", "utt2spk"):
        if not (path / name).is_file():
            raise InputError(f"data directory lacks {name}", path)
    optional = {name: path / name for name in ("segments", "utt2dur", "feats.scp", "cmvn.scp")}
    return DataDir(
        wav_scp=read_table(path / "wav.scp"),
        text=read_table(path / "text", allow_empty_value=True),
        utt2spk=read_table(path / "utt2spk"),
        segments=_read_segments(optional["segments"]) if optional["segments"].is_file() else None,
        utt2dur=_read_floats(optional["utt2dur"]) if optional["utt2dur"].is_file() else None,
        feats_scp=read_table(optional["feats.scp"]) if optional["feats.scp"].is_file() else None,
        cmvn_scp=read_table(optional["cmvn.scp"]) if optional["cmvn.scp"].is_file() else None,
    )


def write_data_dir(data: DataDir, path: str | Path) -> Path:
    """Write ``data`` as a Kaldi data directory (files sorted, each written atomically)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_table(path / "wav.scp", data.wav_scp)
    write_table(path / "text", data.text)
    write_table(path / "utt2spk", data.utt2spk)
    write_table(path / "spk2utt", {s: " ".join(u) for s, u in data.spk2utt.items()})
    if data.segments is not None:
        write_table(
            path / "segments",
            {
                u: f"{s.recording} {_seconds(s.start_s)} {_seconds(s.end_s)}"
                for u, s in data.segments.items()
            },
        )
    if data.utt2dur is not None:
        write_table(path / "utt2dur", {u: f"{d:.3f}" for u, d in data.utt2dur.items()})
    if data.feats_scp is not None:
        write_table(path / "feats.scp", data.feats_scp)
    if data.cmvn_scp is not None:
        write_table(path / "cmvn.scp", data.cmvn_scp)
    return path


def _seconds(x: float) -> str:
    """A segment time as written: the shortest text that reads back as the same float
    (12.345 stays 12.345, -1 stays -1), never rounded to a fixed precision."""
    return str(int(x)) if x == int(x) else repr(x)


def check_coverage(data: DataDir, path: str | Path) -> None:
    """Every utterance of ``utt2spk`` has a transcript and every transcript an utterance;
    without ``segments``, ``wav.scp`` holds exactly the utterances. Otherwise an
    :class:`InputError` names the file, line and the first stray key: a step must not
    drop entries silently."""
    path = Path(path)
    utts = data.utt2spk
    for lineno, utt in enumerate(data.text, start=1):
        if utt not in utts:
            raise InputError(f"utterance {utt!r} has a transcript but is not in utt2spk",
                             path / "text", lineno)  # fmt: skip
    missing = [u for u in utts if u not in data.text]
    if missing:
        raise InputError(f"{len(missing)} utterance(s) of utt2spk have no transcript, e.g. "
                         f"{missing[0]!r}", path / "text")  # fmt: skip
    if data.segments is None:
        for lineno, rec in enumerate(data.wav_scp, start=1):
            if rec not in utts:
                raise InputError(f"recording {rec!r} is not an utterance of utt2spk (and "
                                 "there is no segments file)", path / "wav.scp",
                                 lineno)  # fmt: skip


def _keys_in_file_order(path: Path) -> list[str]:
    with open(path, "rb") as f:
        return [line.split(maxsplit=1)[0].decode("utf-8", "replace") for line in f if line.strip()]


def audio_path_of(rxfilename: str) -> Path | None:
    """The file an rxfilename reads, or None for a pipe (``cmd |``) whose input is unknown."""
    value = rxfilename.strip()
    if value.endswith("|"):
        return None
    return Path(value)


def command_entries(data: DataDir) -> dict[str, list[str]]:
    """The keys of ``wav.scp`` and ``feats.scp`` whose entries are shell commands
    (Kaldi's ``cmd |``): reading the data dir runs them."""
    out = {"wav.scp": [k for k, v in data.wav_scp.items() if v.rstrip().endswith("|")]}
    if data.feats_scp is not None:
        out["feats.scp"] = [k for k, v in data.feats_scp.items() if v.rstrip().endswith("|")]
    return out


def validate_data_dir(
    path: str | Path,
    *,
    check_audio: bool = True,
    require_utt2dur: bool = False,
    allow_pipes: bool = True,
) -> DataDir:
    """Check a data directory like Kaldi's ``utils/validate_data_dir.sh``.

    Checks: every file sorted with unique keys; ``text``/``utt2spk`` (and
    ``segments``, ``feats.scp``, ``utt2dur``) cover the same utterances; no empty
    transcripts; ``spk2utt`` agrees with ``utt2spk``; utterances sort the same way
    by speaker as by id (speaker-prefixed ids); recordings referenced exist in
    ``wav.scp`` and their audio files exist. With ``allow_pipes`` off, entries that are
    shell commands (``cmd |``, which reading the dir would run) are refused: for data
    from elsewhere. Returns the parsed DataDir; raises :class:`InputError` naming the
    file (and line) of the first problem.
    """
    path = Path(path)
    data = read_data_dir(path)
    if not allow_pipes:
        for name, keys in command_entries(data).items():
            if keys:
                table = data.wav_scp if name == "wav.scp" else data.feats_scp
                lineno = list(table).index(keys[0]) + 1
                raise InputError(f"{len(keys)} entries are shell commands ('cmd |'), e.g. "
                                 f"{keys[0]!r}; refused (--no-pipes)", path / name,
                                 lineno)  # fmt: skip
    for name in (
        "wav.scp",
        "text",
        "utt2spk",
        "spk2utt",
        "segments",
        "utt2dur",
        "feats.scp",
        "cmvn.scp",
    ):
        f = path / name
        if not f.is_file():
            if name == "spk2utt":
                raise InputError("data directory lacks spk2utt", path)
            continue
        keys = _keys_in_file_order(f)
        for i in range(1, len(keys)):
            if keys[i] <= keys[i - 1]:
                raise InputError(
                    f"not sorted in C-locale order or duplicate key ({keys[i - 1]!r} "
                    f"then {keys[i]!r})",
                    f,
                    i + 1,
                )

    utts = set(data.utt2spk)
    for lineno, (utt, words) in enumerate(data.text.items(), start=1):
        if utt not in utts:
            raise InputError(
                f"utterance {utt!r} has a transcript but is not in utt2spk", path / "text", lineno
            )
        if not words.strip():
            raise InputError(f"empty transcript for {utt!r}", path / "text", lineno)
    missing_text = utts - set(data.text)
    if missing_text:
        raise InputError(
            f"{len(missing_text)} utterances have no transcript, e.g. {sorted(missing_text)[0]!r}",
            path / "text",
        )

    spk2utt = read_table(path / "spk2utt")
    expected = {s: " ".join(u) for s, u in data.spk2utt.items()}
    for lineno, (spk, line) in enumerate(spk2utt.items(), start=1):
        if expected.get(spk) != " ".join(line.split()):
            raise InputError(f"speaker {spk!r} disagrees with utt2spk", path / "spk2utt", lineno)
    if set(spk2utt) != set(expected):
        raise InputError("speakers differ from those in utt2spk", path / "spk2utt")

    by_speaker = sorted(utts, key=lambda u: (data.utt2spk[u], u))
    if by_speaker != sorted(utts):
        bad = next(u for u, v in zip(by_speaker, sorted(utts), strict=True) if u != v)
        raise InputError(
            f"utterances sorted by speaker differ from sorted by id (at {bad!r}); "
            "make utterance ids start with the speaker id",
            path / "utt2spk",
        )

    if data.segments is not None:
        if set(data.segments) != utts:
            raise InputError("segments and utt2spk cover different utterances", path / "segments")
        for lineno, (utt, seg) in enumerate(data.segments.items(), start=1):
            if seg.recording not in data.wav_scp:
                raise InputError(
                    f"recording {seg.recording!r} of {utt!r} not in wav.scp",
                    path / "segments",
                    lineno,
                )
    elif set(data.wav_scp) != utts:
        extra = sorted(set(data.wav_scp) ^ utts)
        raise InputError(
            f"wav.scp and utt2spk cover different utterances, e.g. {extra[0]!r}", path / "wav.scp"
        )

    for name, table in (("utt2dur", data.utt2dur), ("feats.scp", data.feats_scp)):
        if table is not None and set(table) != utts:
            raise InputError("covers different utterances than utt2spk", path / name)
    if require_utt2dur and data.utt2dur is None:
        raise InputError("data directory lacks utt2dur", path)
    if data.utt2dur is not None:
        for lineno, (utt, dur) in enumerate(data.utt2dur.items(), start=1):
            if dur <= 0:
                raise InputError(f"non-positive duration for {utt!r}", path / "utt2dur", lineno)
    if data.cmvn_scp is not None and set(data.cmvn_scp) != set(spk2utt):
        raise InputError("covers different speakers than spk2utt", path / "cmvn.scp")

    if check_audio:
        for lineno, (rec, rx) in enumerate(data.wav_scp.items(), start=1):
            audio = audio_path_of(rx)
            if audio is not None and not audio.is_file():
                raise InputError(
                    f"audio of {rec!r} does not exist: {audio}", path / "wav.scp", lineno
                )
    return data


def split_data_dir(path: str | Path, num_jobs: int, *, per_utt: bool = False) -> list[Path]:
    """Split a data directory into ``<path>/split<N>/<1..N>``, like ``split_data.sh``.

    By default whole speakers go to one part (so per-speaker CMVN stays valid),
    balanced by utterance count; ``per_utt`` splits utterances evenly instead.
    Raises InputError if there are fewer speakers (or utterances) than parts.
    """
    if num_jobs < 1:
        raise InputError(f"the number of parts must be >= 1, got {num_jobs}", path)
    path = Path(path)
    data = read_data_dir(path)
    units = [[u] for u in data.utt_ids] if per_utt else list(data.spk2utt.values())
    if len(units) < num_jobs:
        kind = "utterances" if per_utt else "speakers"
        raise InputError(f"cannot split {len(units)} {kind} into {num_jobs} parts (use "
                         "fewer jobs, or --per-utt where per-speaker CMVN does not matter)",
                         path)  # fmt: skip
    # Contiguous chunks (C-locale order within parts), balanced by utterance count.
    total = sum(len(u) for u in units)
    parts: list[list[str]] = [[] for _ in range(num_jobs)]
    done = 0
    for unit in units:
        parts[min(done * num_jobs // total, num_jobs - 1)].extend(unit)
        done += len(unit)
    if any(not p for p in parts):
        # Fall back to round-robin over units when balancing left a part empty.
        parts = [[] for _ in range(num_jobs)]
        for i, unit in enumerate(units):
            parts[i % num_jobs].extend(unit)
    out = []
    for j, utts in enumerate(parts, start=1):
        part_dir = path / f"split{num_jobs}" / str(j)
        write_data_dir(data.subset(utts), part_dir)
        out.append(part_dir)
    return out
