"""The dispatcher: every command is registered, documented with an example, and cheap to list; ``--version``
and ``grounding env`` report what is installed."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import subprocess
import sys

import pytest

from grounding.cli.env import _PACKAGES as ENV_PACKAGES
from grounding.cli.main import COMMAND_MODULES, build_parser, main
from grounding.version import __version__


def test_grounding_help_runs_as_a_program_and_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grounding.cli.main", "--help"], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for name in COMMAND_MODULES:
        assert name in result.stdout


def test_listing_the_commands_does_not_import_torch() -> None:
    code = "import sys; from grounding.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
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


def test_version_flag_prints_the_package_version_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grounding.cli.main", "--version"], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"grounding {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", __version__)
    # the version pyproject gives the installed distribution is the one the program reports
    assert importlib.metadata.version("grounding") == __version__


def test_env_json_reports_the_versions_this_process_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import numpy
    import torch

    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    expected_keys = {"grounding", "python", "platform", *ENV_PACKAGES, "cuda", "cuda_available"}
    assert set(info) == expected_keys and all(isinstance(value, str) and value for value in info.values())
    assert info["grounding"] == __version__
    assert info["python"] == platform.python_version()
    assert info["platform"] == platform.platform()
    assert info["torch"] == torch.__version__ and info["numpy"] == numpy.__version__
    assert info["cuda"] == (torch.version.cuda or "none (CPU build)")
    assert info["cuda_available"] == str(torch.cuda.is_available())
    for name in ENV_PACKAGES:  # an installed package shows its version, a missing one says so
        try:
            assert info[name] == importlib.metadata.version(name), name
        except importlib.metadata.PackageNotFoundError:
            assert info[name] == "not installed", name


def test_env_without_json_prints_one_aligned_line_per_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "--json"]) == 0
    fields = json.loads(capsys.readouterr().out)
    assert main(["env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(fields)  # the same fields, in the same order
    value_column = max(len(key) for key in fields) + 2
    for line, (key, value) in zip(lines, fields.items()):
        assert line == f"{key:<{value_column - 2}}  {value}"
        assert line[value_column:] == value


def test_env_names_a_missing_package_as_not_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_version = importlib.metadata.version

    def version(name: str) -> str:
        if name == "h5py":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["h5py"] == "not installed" and info["torch"] == real_version("torch")
