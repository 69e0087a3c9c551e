"""Resumable checksum-verified downloads (against a local HTTP server) and safe tar extraction."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import random
import re
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from asr_distill.data.download import (
    Checksum,
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    download_file,
    extract_tar,
    extraction_marker,
    part_path,
)
from asr_distill.errors import InputError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, position-dependent content


def sha256(data: bytes) -> Checksum:
    return Checksum("sha256", hashlib.sha256(data).hexdigest())


def md5(data: bytes) -> Checksum:
    return Checksum("md5", hashlib.md5(data).hexdigest())


@dataclasses.dataclass
class ServerState:
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    honour_range: bool = True
    drop_after: int | None = None  # next response: send only this many body bytes, then close
    bytes_served: int = 0
    range_headers: list[str | None] = dataclasses.field(default_factory=list)
    in_flight: int = 0  # responses still being written; the client may have read them already
    settled: threading.Condition = dataclasses.field(default_factory=threading.Condition)


class FileServer:
    """An HTTP server on 127.0.0.1 (port 0) serving ``state.files``, counting bytes sent."""

    def __init__(self) -> None:
        self.state = ServerState()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with state.settled:
                    state.in_flight += 1
                try:
                    self._get()
                finally:
                    with state.settled:
                        state.in_flight -= 1
                        state.settled.notify_all()

            def _get(self) -> None:
                rng = self.headers.get("Range")
                state.range_headers.append(rng)
                data = state.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng is not None and state.honour_range:
                    m = re.fullmatch(r"bytes=(\d+)-", rng)
                    start = int(m.group(1)) if m else 0
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if state.drop_after is not None:
                    body, state.drop_after = body[: state.drop_after], None
                self.wfile.write(body)
                state.bytes_served += len(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def served(self) -> int:
        """Body bytes sent, once every response has been written (the client may finish first)."""
        with self.state.settled:
            settled = self.state.settled.wait_for(lambda: self.state.in_flight == 0, timeout=10)
            assert settled, "a response was still being written after 10 s"
            return self.state.bytes_served

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FileServer]:
    s = FileServer()
    try:
        yield s
    finally:
        s.close()


# --------------------------------------------------------------------------- download


def test_download_verifies_and_renames(server: FileServer, tmp_path: Path) -> None:
    server.state.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "dl" / "f.bin"
    out = download_file(server.url("/f.bin"), dest, [sha256(PAYLOAD), md5(PAYLOAD)], progress=False)
    assert out == dest
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()
    assert server.served() == len(PAYLOAD)


def test_present_good_file_is_not_downloaded_again(server: FileServer, tmp_path: Path) -> None:
    server.state.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    dest.write_bytes(PAYLOAD)
    download_file(server.url("/f.bin"), dest, [sha256(PAYLOAD)], progress=False)
    assert server.state.range_headers == []  # no request at all
    assert dest.read_bytes() == PAYLOAD


def test_present_bad_file_is_downloaded_again(server: FileServer, tmp_path: Path) -> None:
    server.state.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"stale")
    download_file(server.url("/f.bin"), dest, [sha256(PAYLOAD)], progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_wrong_checksum_raises_and_leaves_nothing(server: FileServer, tmp_path: Path) -> None:
    server.state.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    wrong = sha256(b"something else")
    url = server.url("/f.bin")
    with pytest.raises(ChecksumError) as e:
        download_file(url, dest, [wrong], progress=False)
    msg = str(e.value)
    assert url in msg and str(dest) in msg
    assert wrong.hexdigest in msg and hashlib.sha256(PAYLOAD).hexdigest() in msg
    assert isinstance(e.value, InputError)
    assert not dest.exists() and not part_path(dest).exists()


def test_one_wrong_checksum_of_two_fails(server: FileServer, tmp_path: Path) -> None:
    server.state.files["/f.bin"] = PAYLOAD
    with pytest.raises(ChecksumError, match="md5"):
        download_file(
            server.url("/f.bin"),
            tmp_path / "f.bin",
            [sha256(PAYLOAD), md5(b"nope")],
            progress=False,
        )


def test_resume_fetches_only_the_rest(server: FileServer, tmp_path: Path) -> None:
    server.state.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    have = 300_001
    part_path(dest).write_bytes(PAYLOAD[:have])
    download_file(server.url("/f.bin"), dest, [sha256(PAYLOAD)], progress=False)
    assert server.state.range_headers == [f"bytes={have}-"]
    assert server.served() == len(PAYLOAD) - have
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()


def test_server_ignoring_range_restarts_from_zero(server: FileServer, tmp_path: Path) -> None:
    server.state.files["/f.bin"] = PAYLOAD
    server.state.honour_range = False
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(b"X" * 1000)  # junk that must not end up in the result
    download_file(server.url("/f.bin"), dest, [sha256(PAYLOAD)], progress=False)
    assert server.served() == len(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD


def test_corrupt_partial_file_fails_checksum_and_is_removed(
    server: FileServer, tmp_path: Path
) -> None:
    server.state.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(b"X" * 1000)
    with pytest.raises(ChecksumError):
        download_file(server.url("/f.bin"), dest, [sha256(PAYLOAD)], progress=False)
    assert not part_path(dest).exists()
    # ... so the next run starts clean and succeeds.
    download_file(server.url("/f.bin"), dest, [sha256(PAYLOAD)], progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_dropped_connection_is_resumed(server: FileServer, tmp_path: Path) -> None:
    server.state.files["/f.bin"] = PAYLOAD
    server.state.drop_after = 400_000
    dest = tmp_path / "f.bin"
    download_file(server.url("/f.bin"), dest, [sha256(PAYLOAD)], retry_wait_s=0, progress=False)
    assert server.state.range_headers == [None, "bytes=400000-"]
    assert server.served() == len(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD


def test_complete_partial_file_with_416_is_accepted(server: FileServer, tmp_path: Path) -> None:
    server.state.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(PAYLOAD)
    download_file(server.url("/f.bin"), dest, [sha256(PAYLOAD)], progress=False)
    assert server.served() == 0
    assert dest.read_bytes() == PAYLOAD


def test_http_404_names_url(server: FileServer, tmp_path: Path) -> None:
    url = server.url("/missing.bin")
    with pytest.raises(DownloadError, match="404") as e:
        download_file(url, tmp_path / "m.bin", [sha256(PAYLOAD)], progress=False)
    assert url in str(e.value)
    assert not (tmp_path / "m.bin").exists()


def test_checksum_parsing() -> None:
    c = Checksum.parse("SHA256:" + "AB" * 32)
    assert c.algorithm == "sha256" and c.hexdigest == "ab" * 32
    with pytest.raises(ValueError):
        Checksum("sha1", "00" * 20)
    with pytest.raises(ValueError):
        Checksum("md5", "xyz")


# --------------------------------------------------------------------------- tar extraction


def make_tar(
    path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz"
) -> Path:
    """Write a tar archive of (name, bytes) files and raw TarInfo members."""
    with tarfile.open(path, mode) as tf:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tf.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("suffix,mode", [(".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar", "w")])
def test_extract_good_archive_and_skip_on_rerun(tmp_path: Path, suffix: str, mode: str) -> None:
    archive = make_tar(
        tmp_path / f"a{suffix}",
        [
            ("LibriSpeech/README.TXT", b"readme"),
            ("LibriSpeech/dev/1/2/1-2.trans.txt", b"1-2-0000 HI\n"),
            link("LibriSpeech/dev/alias.txt", "1/2/1-2.trans.txt"),
        ],
        mode,
    )
    target = tmp_path / "corpus"
    extract_tar(archive, target, progress=False)
    assert (target / "LibriSpeech/README.TXT").read_bytes() == b"readme"
    assert (target / "LibriSpeech/dev/alias.txt").read_bytes() == b"1-2-0000 HI\n"
    assert (target / extraction_marker(archive)).is_file()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    # A re-run is skipped (a deleted file is not restored) unless forced.
    (target / "LibriSpeech/README.TXT").unlink()
    extract_tar(archive, target, progress=False)
    assert not (target / "LibriSpeech/README.TXT").exists()
    extract_tar(archive, target, force=True, progress=False)
    assert (target / "LibriSpeech/README.TXT").exists()


def test_extract_merges_into_existing_tree(tmp_path: Path) -> None:
    a = make_tar(tmp_path / "a.tar.gz", [("LibriSpeech/dev/x.txt", b"a")])
    b = make_tar(tmp_path / "b.tar.gz", [("LibriSpeech/test/y.txt", b"b")])
    target = tmp_path / "corpus"
    extract_tar(a, target, progress=False)
    extract_tar(b, target, progress=False)
    assert (target / "LibriSpeech/dev/x.txt").read_bytes() == b"a"
    assert (target / "LibriSpeech/test/y.txt").read_bytes() == b"b"


def _device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    return info


@pytest.mark.parametrize(
    "bad,member,why",
    [
        (("../evil.txt", b"x"), "../evil.txt", "'..'"),
        (("LibriSpeech/../../evil.txt", b"x"), "LibriSpeech/../../evil.txt", "'..'"),
        (("/tmp/evil-absolute.txt", b"x"), "/tmp/evil-absolute.txt", "absolute"),
        (link("LibriSpeech/out", "../../outside"), "LibriSpeech/out", "outside"),
        (link("LibriSpeech/abs", "/etc/passwd"), "LibriSpeech/abs", "absolute"),
        (link("LibriSpeech/hard", "../x", tarfile.LNKTYPE), "LibriSpeech/hard", "outside"),
        (_device("LibriSpeech/null"), "LibriSpeech/null", "device"),
    ],
)
def test_unsafe_archive_is_refused_and_writes_nothing(
    tmp_path: Path, bad: object, member: str, why: str
) -> None:
    # The bad member comes last: nothing before it may be written either.
    archive = make_tar(tmp_path / "bad.tar.gz", [("LibriSpeech/ok.txt", b"fine"), bad])
    target = tmp_path / "work" / "corpus"
    target.mkdir(parents=True)
    (target / "keep.txt").write_text("existing")
    before_outside = snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError) as e:
        extract_tar(archive, target, progress=False)
    assert str(archive) in str(e.value) and repr(member) in str(e.value)
    assert why in str(e.value)
    assert snapshot(target) == {"keep.txt"}
    assert snapshot(tmp_path) == before_outside


def test_member_below_a_symlink_is_refused(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "bad.tar", [link("d", "."), link("d/up", ".."), ("d/up/x", b"x")], "w"
    )
    target = tmp_path / "t"
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract_tar(archive, target, progress=False)
    assert not target.exists() or snapshot(target) == set()


def test_unsafe_archive_over_http_writes_nothing(server: FileServer, tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "src.tar.gz", [("ok.txt", b"ok"), ("../escape.txt", b"x")])
    data = archive.read_bytes()
    server.state.files["/bad.tar.gz"] = data
    dl = tmp_path / "dl"
    local = download_file(
        server.url("/bad.tar.gz"), dl / "bad.tar.gz", [sha256(data)], progress=False
    )
    target = tmp_path / "out" / "corpus"
    with pytest.raises(UnsafeArchiveError, match="escape"):
        extract_tar(local, target, progress=False)
    assert not (tmp_path / "out" / "escape.txt").exists()
    assert snapshot(tmp_path / "out") == set()


def test_corrupt_archive_is_an_input_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x1f\x8b" + b"junk" * 100)
    rng = random.Random(0)
    files = [(f"f{i}", rng.randbytes(20_000)) for i in range(20)]  # incompressible
    good = make_tar(tmp_path / "good.tar.gz", files)
    data = bytearray(good.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    flipped = tmp_path / "flipped.tar.gz"
    flipped.write_bytes(bytes(data))
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[: len(data) // 2])
    for bad in (junk, flipped, truncated):
        target = tmp_path / f"t-{bad.name}"
        with pytest.raises(InputError, match=re.escape(str(bad))):
            extract_tar(bad, target, progress=False)
        assert not target.exists() or snapshot(target) == set()


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_link_through_another_link_is_refused(tmp_path: Path, order) -> None:
    """Each link's text stays inside, but the filesystem resolves a's '..' after
    following b: a would point outside the target dir."""
    links = {"a": link("LibriSpeech/d2/a", "b/../../.."), "b": link("LibriSpeech/d2/b", "../..")}
    archive = make_tar(tmp_path / "bad.tar", [links[k] for k in order], "w")
    target = tmp_path / "t"
    with pytest.raises(
        UnsafeArchiveError, match="goes through the symbolic link 'LibriSpeech/d2/b'"
    ):
        extract_tar(archive, target, progress=False)
    assert not target.exists() or snapshot(target) == set()


def test_backslash_is_part_of_a_link_name_not_a_separator(tmp_path: Path) -> None:
    """On POSIX 'b\\c' is one name: a target walking through it goes through that link."""
    links = [link("x/y/a", "b\\c/../../.."), link("x/y/b\\c", "../..")]
    archive = make_tar(tmp_path / "bad.tar", links, "w")
    with pytest.raises(UnsafeArchiveError, match="goes through the symbolic link"):
        extract_tar(archive, tmp_path / "t", progress=False)
