"""The one UTF-8 line reader: plain and gzipped files, errors naming file and line."""

from __future__ import annotations

import gzip

import pytest

from asr_distill.errors import InputError
from asr_distill.io.text import utf8_lines


def test_lines_numbered_with_endings_removed_plain_and_gzipped(tmp_path):
    data = "a b\r\nc\n\nd é".encode()
    (tmp_path / "t.txt").write_bytes(data)
    with gzip.open(tmp_path / "t.txt.gz", "wb") as f:
        f.write(data)
    want = [(1, "a b"), (2, "c"), (3, ""), (4, "d é")]
    assert list(utf8_lines(tmp_path / "t.txt")) == want
    assert list(utf8_lines(tmp_path / "t.txt.gz")) == want


def test_bad_bytes_missing_and_torn_files_name_the_file(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(InputError, match=r"bad\.txt:2: not valid UTF-8"):
        list(utf8_lines(tmp_path / "bad.txt"))
    with pytest.raises(InputError, match=r"missing\.txt.*cannot read"):
        list(utf8_lines(tmp_path / "missing.txt"))
    with gzip.open(tmp_path / "torn.gz", "wb") as f:
        f.write(b"line\n" * 1000)
    (tmp_path / "torn.gz").write_bytes((tmp_path / "torn.gz").read_bytes()[:30])
    with pytest.raises(InputError, match=r"torn\.gz.*cannot read"):
        list(utf8_lines(tmp_path / "torn.gz"))
