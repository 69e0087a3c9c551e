"""step_log and read_done_meta: a finished step is skipped only when asked with the settings
it recorded; the metadata of a finished step dir, or an error naming the path."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from asr_distill.errors import InputError
from asr_distill.io import mark_done
from asr_distill.io.step import read_done_meta, step_log


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


@dataclasses.dataclass
class _Inner:
    leaves: int = 2


@dataclasses.dataclass
class _Conf:
    order: int = 3
    prune: list = dataclasses.field(default_factory=list)
    name: str = "x"
    inner: _Inner = dataclasses.field(default_factory=_Inner)


def _run(out, conf, force=False) -> bool:
    with step_log(out, "step.log", force=force, config=conf) as run:
        return run


def test_finished_step_is_skipped_only_with_its_recorded_settings(tmp_path):
    out = tmp_path / "step"
    assert _run(out, _Conf(prune=[0, 1]))
    assert yaml.safe_load((out / "config.yaml").read_text()) == {
        "order": 3, "prune": [0, 1], "name": "x", "inner": {"leaves": 2}}  # fmt: skip
    assert not _run(out, _Conf(prune=[0, 1]))  # the same settings: nothing to do
    with pytest.raises(
        InputError,
        match=r"step.*finished with other settings "
        r"\(order: 3 -> 4; prune: \[0, 1\] -> \[\]\); redo it with --force",
    ):
        _run(out, _Conf(order=4))
    assert (out / ".done").exists()  # the refusal leaves the finished output alone
    assert _run(out, _Conf(order=4), force=True)  # --force redoes it with the new ones
    assert not _run(out, _Conf(order=4))


def test_a_field_added_since_counts_as_its_default(tmp_path):
    out = tmp_path / "step"
    assert _run(out, _Conf())
    # recorded before 'prune' and 'inner' (a nested config) were added
    (out / "config.yaml").write_text("order: 3\nname: x\n")
    assert not _run(out, _Conf())
    with pytest.raises(InputError, match=r"inner\.leaves: 2 -> 5"):
        _run(out, _Conf(inner=_Inner(leaves=5)))
    with pytest.raises(InputError, match=r"prune: \[\] -> \[1\]"):
        _run(out, _Conf(prune=[1]))
    (out / "config.yaml").write_text("- not a mapping\n")
    with pytest.raises(InputError, match=r"config\.yaml.*not a mapping"):
        _run(out, _Conf())
