"""docs/cli.md is every command's --help, verbatim: regenerate it when a flag changes."""

from __future__ import annotations

from pathlib import Path

from grounding.cli.main import COMMAND_MODULES
from grounding.cli.reference import cli_reference

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_the_cli_reference_page_matches_the_commands() -> None:
    expected = cli_reference()
    assert PAGE.read_text(encoding="utf-8") == expected, (
        "docs/cli.md is out of date: python -m grounding.cli.reference > docs/cli.md"
    )
    for name in COMMAND_MODULES:
        assert f"\n## grounding {name}\n" in expected
        section = expected.split(f"\n## grounding {name}\n", 1)[1].split("\n## ", 1)[0]
        assert "example" in section.lower(), f"grounding {name} --help gives no example"
