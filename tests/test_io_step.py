"""read_done_meta: the metadata of a finished step dir, or an error naming the path."""

from __future__ import annotations

import pytest

from asr_distill.errors import InputError
from asr_distill.io import mark_done
from asr_distill.io.step import read_done_meta


def test_read_done_meta(tmp_path):
    out = tmp_path / "store"
    with pytest.raises(InputError, match=r"store directory does not exist"):
        read_done_meta(out, "store", "rebuild it")
    out.mkdir()
    (out / "meta.json").write_text('{"num_frames": 3}')
    with pytest.raises(InputError, match=r"incomplete \(no \.done marker\); rebuild it"):
        read_done_meta(out, "store", "rebuild it")
    mark_done(out)
    assert read_done_meta(out, "store", "rebuild it") == {"num_frames": 3}
    (out / "meta.json").write_text("{not json")
    with pytest.raises(InputError, match=r"meta\.json.*not valid JSON"):
        read_done_meta(out, "store", "rebuild it")
    (out / "meta.json").unlink()
    with pytest.raises(InputError, match=r"store has no meta\.json"):
        read_done_meta(out, "store", "rebuild it")
