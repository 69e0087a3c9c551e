"""The command line: each subcommand is registered by the module COMMANDS names, and a
step that needs no DNN starts without importing torch."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest

from asr_distill.cli import COMMANDS, build_parser, main
from asr_distill.config import add_config_options, config_from_args
from asr_distill.errors import InputError


def registered(parser) -> set[str]:
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)


def test_commands_map_matches_the_modules():
    assert registered(build_parser()) == set(COMMANDS)
    for command, module in COMMANDS.items():
        mine = {c for c, m in COMMANDS.items() if m == module}
        assert registered(build_parser(command)) == mine, module


def test_light_steps_do_not_import_torch():
    code = ("import sys; from asr_distill.cli import build_parser; "
            "[build_parser(c) for c in {cmds!r}]; print('torch' in sys.modules)")  # fmt: skip
    light = ["score", "validate-data-dir", "prepare-lang", "train-lm", "mkgraph", "report"]
    out = subprocess.run([sys.executable, "-c", code.format(cmds=light)], capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "False"


def test_os_errors_are_one_line_naming_the_file_and_traceback_only_with_verbose(tmp_path):
    """A file where a directory must go (as permission denied or a full disk): exit 1
    and one line naming the path, no traceback unless --verbose."""
    (tmp_path / "exp").mkdir()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cmd = [sys.executable, "-m", "asr_distill", "report", str(tmp_path / "exp"),
           str(blocker / "report")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if "ERROR" in ln]
    assert len(lines) == 1 and str(blocker) in lines[0] and "Traceback" not in out.stderr
    out = subprocess.run([*cmd[:3], "--verbose", *cmd[3:]], capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" in out.stderr


@dataclasses.dataclass
class _Opts:
    """Options for the tests below."""

    rate: float = 0.5
    speeds: list[float] = dataclasses.field(default_factory=lambda: [1.0])
    span: tuple[int, int] = (1, 2)
    on: bool = True

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")


def _parse(*argv: str) -> _Opts:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None)
    add_config_options(parser, _Opts)
    args = parser.parse_args(argv)
    return config_from_args(_Opts, args, args.config)


def test_list_options_take_separate_comma_or_space_separated_values():
    assert _parse().speeds == [1.0]
    for argv in (["--speeds", "0.9,1.1"], ["--speeds", "0.9 1.1"], ["--speeds", " 0.9, 1.1"]):
        assert _parse(*argv).speeds == [0.9, 1.1], argv
    assert _parse("--span", "3,4").span == (3, 4)  # tuple fields stay tuples
    assert _parse("--no-on", "--rate", "2").on is False


def test_bad_option_values_are_input_errors_naming_the_config(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("rate: 0.1\n")
    with pytest.raises(InputError, match=r"c\.yaml.*rate must be positive"):
        _parse("--config", str(conf), "--rate", "-1")
    with pytest.raises(SystemExit):  # argparse: not a number
        _parse("--speeds", "0.9,fast")


def test_decode_takes_lmwts_or_lmwt_from_not_both(tmp_path):
    argv = ["decode", "g", "m", "d", str(tmp_path / "dec"), "--lmwts", "7 9"]
    assert build_parser("decode").parse_args(argv).lmwts == [7.0, 9.0]
    assert main([*argv, "--lmwt-from", str(tmp_path)]) == 1
    assert main(["decode", "g", "m", "d", str(tmp_path / "x"), "--lmwts", "0,9"]) == 1
