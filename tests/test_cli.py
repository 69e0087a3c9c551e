"""The command line: each subcommand is registered by the module COMMANDS names, and a
step that needs no DNN starts without importing torch."""

from __future__ import annotations

import subprocess
import sys

from asr_distill.cli import COMMANDS, build_parser


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
