"""The dispatcher: every command is registered, documented with an example, and cheap to list."""

from __future__ import annotations

import subprocess
import sys

import pytest

from grounding.cli.main import COMMAND_MODULES, build_parser, main


def test_grounding_help_runs_as_a_program_and_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grounding.cli.main", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for name in COMMAND_MODULES:
        assert name in result.stdout


def test_listing_the_commands_does_not_import_torch() -> None:
    code = "import sys; from grounding.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("command", COMMAND_MODULES)
def test_every_command_has_help_ending_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: grounding {command}" in out
    assert "example" in out


def test_no_command_prints_help_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 1
    assert "COMMAND" in capsys.readouterr().err


def test_unknown_command_is_an_argparse_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["nope"])
    assert exit_info.value.code == 2
