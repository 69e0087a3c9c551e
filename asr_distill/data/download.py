"""Resumable, checksum-verified HTTP(S) downloads and safe tar extraction.

:func:`download_file` fetches ``url`` into ``<dest>.part`` (resuming a partial
file with an HTTP ``Range`` request; a server that ignores ``Range`` restarts
the transfer from byte zero), verifies every given checksum and only then
renames the file to ``dest``. A ``dest`` that is already present with good
checksums is not fetched again.

:func:`extract_tar` unpacks a ``.tar``/``.tar.gz``/``.tgz`` archive after checking
*all* of its members (no absolute paths, no ``..``, no links leaving the target
directory, no device files); a refused archive writes nothing. Members are
unpacked into a temporary directory next to the target, moved into place, and a
done marker makes a re-run skip the extraction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import logging
import os
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from asr_distill.errors import InputError
from asr_distill.io import is_done, mark_done

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
_HEX_LENGTHS = {"md5": 32, "sha256": 64}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class DownloadError(InputError):
    """A download failed (network, HTTP status, short transfer); names the URL."""


class ChecksumError(DownloadError):
    """A file's digest differs from the expected one."""


class UnsafeArchiveError(InputError):
    """An archive member would write outside the target directory (or is a device)."""


@dataclasses.dataclass(frozen=True)
class Checksum:
    """An expected digest: ``algorithm`` is ``"sha256"`` or ``"md5"``, ``hexdigest`` lowercase."""

    algorithm: str
    hexdigest: str

    def __post_init__(self) -> None:
        if self.algorithm not in _HEX_LENGTHS:
            raise ValueError(
                f"unsupported checksum algorithm {self.algorithm!r} "
                f"(use one of {sorted(_HEX_LENGTHS)})"
            )
        digest = self.hexdigest.lower()
        if len(digest) != _HEX_LENGTHS[self.algorithm] or not re.fullmatch(r"[0-9a-f]+", digest):
            raise ValueError(f"not a {self.algorithm} hex digest: {self.hexdigest!r}")
        object.__setattr__(self, "hexdigest", digest)

    @classmethod
    def parse(cls, text: str) -> Checksum:
        """Parse ``"sha256:<hex>"`` or ``"md5:<hex>"``."""
        algorithm, sep, digest = text.partition(":")
        if not sep:
            raise ValueError(f"expected ALGORITHM:HEX (e.g. sha256:...), got {text!r}")
        return cls(algorithm.strip().lower(), digest.strip())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


class _Hashers:
    """Several digests computed in one pass over the bytes."""

    def __init__(self, checksums: Sequence[Checksum]):
        self.checksums = tuple(checksums)
        self.hashers = {c.algorithm: hashlib.new(c.algorithm) for c in self.checksums}

    def update(self, chunk: bytes) -> None:
        for h in self.hashers.values():
            h.update(chunk)

    def update_from_file(self, path: Path, limit: int | None = None) -> None:
        with open(path, "rb") as f:
            remaining = limit
            while remaining is None or remaining > 0:
                size = CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining)
                chunk = f.read(size)
                if not chunk:
                    break
                self.update(chunk)
                if remaining is not None:
                    remaining -= len(chunk)

    def mismatches(self) -> list[tuple[Checksum, str]]:
        """(expected, actual hexdigest) for every checksum that does not match."""
        out = []
        for c in self.checksums:
            actual = self.hashers[c.algorithm].hexdigest()
            if actual != c.hexdigest:
                out.append((c, actual))
        return out


def file_digests(path: str | Path, checksums: Sequence[Checksum]) -> list[tuple[Checksum, str]]:
    """Hash ``path`` once and return (expected, actual) for each checksum that does NOT match."""
    hashers = _Hashers(checksums)
    hashers.update_from_file(Path(path))
    return hashers.mismatches()


def _describe_mismatch(mismatches: list[tuple[Checksum, str]]) -> str:
    return "; ".join(
        f"expected {c.algorithm} {c.hexdigest}, got {actual}" for c, actual in mismatches
    )


def part_path(dest: str | Path) -> Path:
    """Where :func:`download_file` keeps the partial download of ``dest``."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def download_file(
    url: str,
    dest: str | Path,
    checksums: Sequence[Checksum],
    *,
    timeout_s: float = 60.0,
    retries: int = 3,
    retry_wait_s: float = 2.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``, resuming ``<dest>.part``, and verify ``checksums``.

    Args:
        url: ``http://``, ``https://`` (or ``file://``) URL.
        dest: final file name; written only after all checksums match.
        checksums: at least one expected digest (sha256 and/or md5); all must match.
        timeout_s: socket timeout per request (default 60 s).
        retries: how many times a dropped connection is resumed before giving up (default 3).
        retry_wait_s: pause before each retry (default 2 s).
        progress: show a tqdm progress bar (default True).

    Returns ``dest``. If ``dest`` already exists with matching checksums nothing is
    fetched; if it exists with a wrong checksum it is fetched again. Raises
    :class:`ChecksumError` (naming URL, file, expected and actual digests) when the
    downloaded bytes do not match, after removing them, and :class:`DownloadError`
    for HTTP/network failures (the ``.part`` file is kept, so a re-run resumes).
    """
    if not checksums:
        raise ValueError(f"download_file needs at least one checksum for {url}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)

    if dest.is_file():
        bad = file_digests(dest, checksums)
        if not bad:
            log.info("%s: already downloaded, checksum OK", dest)
            return dest
        log.warning(
            "%s exists but its checksum is wrong (%s); downloading it again",
            dest,
            _describe_mismatch(bad),
        )
        dest.unlink()

    attempt = 0
    while True:
        try:
            _fetch_into(url, part, timeout_s=timeout_s, progress=progress)
            break
        except _RangeNotSatisfiable:
            # The server says our offset is at or past the end: the part file may
            # already be complete; the checksum below decides. Otherwise restart.
            if not file_digests(part, checksums):
                break
            log.warning("%s: server refused to resume; restarting from zero", url)
            part.unlink()
        except _TransientError as e:
            attempt += 1
            if attempt > retries:
                raise DownloadError(
                    f"download of {url} failed after {retries} retries: {e}; "
                    f"re-run to resume from the {part.stat().st_size if part.exists() else 0} "
                    f"bytes in {part}",
                    dest,
                ) from None
            log.warning(
                "%s: %s; resuming in %.0f s (retry %d/%d)", url, e, retry_wait_s, attempt, retries
            )
            time.sleep(retry_wait_s)

    bad = file_digests(part, checksums)
    if bad:
        part.unlink()
        raise ChecksumError(
            f"checksum mismatch for {url}: {_describe_mismatch(bad)}; removed the bad download",
            dest,
        )
    os.replace(part, dest)
    log.info("%s: downloaded, checksum OK (%s)", dest, ", ".join(str(c) for c in checksums))
    return dest


class _TransientError(Exception):
    """A failure worth resuming after (connection dropped, short read, 5xx)."""


class _RangeNotSatisfiable(Exception):
    """HTTP 416 for a resume request."""


def _fetch_into(url: str, part: Path, *, timeout_s: float, progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (or rewrite it when the server sends it all)."""
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "asr-distill"})
    if offset > 0:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset > 0:
            raise _RangeNotSatisfiable() from None
        if e.code >= 500:
            raise _TransientError(f"HTTP {e.code} {e.reason}") from None
        raise DownloadError(f"HTTP {e.code} {e.reason} for {url}", part.with_suffix("")) from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, (TimeoutError, ConnectionError)):
            raise _TransientError(f"cannot reach {url}: {e.reason}") from None
        raise DownloadError(f"cannot download {url}: {e.reason}", part.with_suffix("")) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise _TransientError(f"{type(e).__name__}: {e}") from None

    with response:
        status = getattr(response, "status", None)
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if offset > 0 and status == 206:
            start = _range_start(response.headers.get("Content-Range", ""))
            if start != offset:
                part.unlink()
                raise _TransientError(
                    f"server resumed at byte {start}, not at {offset} as "
                    "asked; restarting from zero"
                )
            mode = "ab"
            log.info("%s: resuming at byte %d", url, offset)
        else:
            if offset > 0:
                log.warning("%s: server ignored the Range request; restarting from zero", url)
            offset = 0
            mode = "wb"
        total = None if length is None else offset + length
        received = 0
        bar = tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
            disable=not progress,
            leave=False,
        )
        try:
            with bar, open(part, mode) as f:
                while True:
                    chunk = response.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
            raise _TransientError(f"{type(e).__name__}: {e}") from None
        if length is not None and received < length:
            raise _TransientError(f"connection closed after {received} of {length} bytes")


def _range_start(content_range: str) -> int | None:
    m = _CONTENT_RANGE.match(content_range.strip())
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- tar extraction


def _refuse(archive: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"refusing to extract member {member!r}: {why}", archive)


def check_tar_members(archive: str | Path, members: Sequence[tarfile.TarInfo]) -> None:
    """Raise :class:`UnsafeArchiveError` (naming archive and member) unless every member is safe.

    Safe means: a regular file, directory, or a symbolic/hard link; a relative
    path without ``..``; not below a symbolic link of the same archive; links
    whose targets stay inside the extraction directory; no duplicate file names.
    """
    archive = Path(archive)
    # Every symlink of the archive, wherever it comes: a link may name one made later.
    symlinks = {PurePosixPath(m.name) for m in members if m.issym()}
    seen: set[PurePosixPath] = set()
    for m in members:
        name = m.name
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            raise _refuse(archive, name, "absolute path")
        path = PurePosixPath(name)
        if ".." in re.split(r"[/\\]", name):
            raise _refuse(archive, name, "path contains '..'")
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            kind = "device file" if (m.ischr() or m.isblk()) else "special file (FIFO or other)"
            raise _refuse(archive, name, kind)
        for parent in path.parents:
            if parent in symlinks:
                raise _refuse(archive, name, f"path goes through the symbolic link {str(parent)!r}")
        if m.issym() or m.islnk():
            target = m.linkname
            if not target or target.startswith("/") or re.match(r"^[A-Za-z]:", target):
                raise _refuse(archive, name, f"link to absolute path {target!r}")
            # Symlink targets are relative to the link's directory, hard links to the root.
            base = path.parent.parts if m.issym() else ()
            _check_link_walk(archive, name, target, list(base), symlinks)
        if path in seen and not m.isdir():
            raise _refuse(archive, name, "duplicate member name")
        seen.add(path)


def _check_link_walk(archive: Path, name: str, target: str, here: list[str],
                     symlinks: set[PurePosixPath]) -> None:  # fmt: skip
    """Follow a link's target one component at a time from ``here`` (the parts of its
    directory): it must stay inside the target dir and pass through no other symlink
    of the archive, since the filesystem resolves ``..`` after such a link, not before
    (``a -> b/../../..`` with ``b -> ../..`` leaves the dir though each text stays in)."""
    for part in target.split("/"):  # POSIX: a backslash is part of a name
        if part in ("", "."):
            continue
        if part == "..":
            if not here:
                raise _refuse(archive, name, f"link target {target!r} is outside the target dir")
            here.pop()
            continue
        here.append(part)
        if PurePosixPath(*here) in symlinks:
            raise _refuse(archive, name, f"link target {target!r} goes through the symbolic "
                          f"link {'/'.join(here)!r}")  # fmt: skip


def _merge_move(src: Path, dst: Path) -> None:
    """Move the contents of directory ``src`` into ``dst``, merging existing directories."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if (
            entry.is_dir()
            and not entry.is_symlink()
            and target.is_dir()
            and not target.is_symlink()
        ):
            _merge_move(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)


def _extract_via_temp_dir(
    tf: tarfile.TarFile,
    members: list[tarfile.TarInfo],
    archive: Path,
    target_dir: Path,
    *,
    progress: bool,
) -> None:
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = target_dir.parent / f".{target_dir.name}.{archive.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        bar = tqdm(
            members,
            desc=f"extract {archive.name}",
            unit="file",
            disable=not progress,
            leave=False,
        )
        with bar:
            # The "data" filter re-checks every member against ``tmp`` (defence in depth)
            # and drops ownership and special permission bits.
            tf.extractall(tmp, members=bar, filter="data")
        _merge_move(tmp, target_dir)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)


def extraction_marker(archive: str | Path) -> str:
    """Name of the done marker :func:`extract_tar` leaves in the target directory."""
    return f".{Path(archive).name}.extracted"


def extract_tar(
    archive: str | Path, target_dir: str | Path, *, force: bool = False, progress: bool = True
) -> Path:
    """Safely extract a ``.tar``, ``.tar.gz`` or ``.tgz`` archive into ``target_dir``.

    All members are checked first (:func:`check_tar_members`); an unsafe archive
    raises :class:`UnsafeArchiveError` and writes nothing. Members are unpacked into
    a temporary directory next to ``target_dir`` (same filesystem), then moved into
    it (merging with directories already there, e.g. ``LibriSpeech/`` from another
    subset), and a done marker (:func:`extraction_marker`) is left in ``target_dir``.
    A re-run with the marker present returns at once unless ``force``.
    Returns ``target_dir``.
    """
    archive = Path(archive)
    target_dir = Path(target_dir)
    marker = extraction_marker(archive)
    if is_done(target_dir, marker) and not force:
        log.info("%s: already extracted into %s", archive, target_dir)
        return target_dir
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            # tarfile stops quietly at a corrupt header; reading the compressed stream
            # to its end makes gzip check its CRC, so a damaged archive is an error.
            while tf.fileobj.read(CHUNK_BYTES):
                pass
            check_tar_members(archive, members)
            _extract_via_temp_dir(tf, members, archive, target_dir, progress=progress)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise InputError(f"cannot extract archive: {e}", archive) from None
    mark_done(target_dir, marker)
    log.info("%s: extracted %d members into %s", archive, len(members), target_dir)
    return target_dir
