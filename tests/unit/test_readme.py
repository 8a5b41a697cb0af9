"""The README's tables are checked against the code, so they cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from sitesteward.audit import FINDING_CODES, REFRESH_CODES
from sitesteward.cli import app
from sitesteward.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_finding_code_is_documented_with_its_severity() -> None:
    rows = dict(re.findall(r"^\| `([a-z0-9_]+)` \| (error|warning|notice) \|", README, flags=re.MULTILINE))
    assert set(rows) == set(FINDING_CODES)
    for code, (severity, _) in FINDING_CODES.items():
        assert rows[code] == severity.value, code


def test_refresh_codes_are_marked() -> None:
    marked = set(re.findall(r"^\| `([a-z0-9_]+)` \|.*\*refresh\* \|$", README, flags=re.MULTILINE))
    assert marked == set(REFRESH_CODES)


def test_every_setting_is_documented() -> None:
    documented = set(re.findall(r"`SITESTEWARD_([A-Z_]+)`", README))
    internal = {"fault_points", "clock_file"}  # tests only
    assert {name.upper() for name in Settings.model_fields if name not in internal} <= documented


def test_every_documented_command_exists() -> None:
    commands = set(re.findall(r"^\| `sitesteward ([a-z]+)", README, flags=re.MULTILINE))
    assert commands
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, (command, result.output)
