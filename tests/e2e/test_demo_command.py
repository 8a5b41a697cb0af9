"""The README's main command, as a newcomer runs it: ``sitesteward demo`` in a real subprocess, twice."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_demo(data_dir: Path, ports: tuple[int, int]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SITESTEWARD_", "PREFECT_"))}
    env.update(SITESTEWARD_DATA_DIR=str(data_dir), COLUMNS="200")
    command = [
        sys.executable, "-m", "sitesteward.cli", "demo", "--approve-all",
        "--port", str(ports[0]), "--sources-port", str(ports[1]),
    ]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_demo_runs_the_loop_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = (_free_port(), _free_port())
    first = _run_demo(data_dir, ports)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "drafts await review" in first.stdout
    assert "monitoring" in first.stdout
    site = data_dir / "demo" / "site"
    why_static = (site / "why-static.md").read_text()
    assert "57%" in why_static and "42% of teams" not in why_static
    snapshot = {p: p.read_text() for p in site.rglob("*.md")}

    second = _run_demo(data_dir, ports)
    assert second.returncode == 0, second.stdout + second.stderr
    assert " 0 drafts await review" in second.stdout
    assert {p: p.read_text() for p in site.rglob("*.md")} == snapshot


def test_refresh_command_rejects_bad_input_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SITESTEWARD_", "PREFECT_"))}
    env["SITESTEWARD_DATA_DIR"] = str(tmp_path / "data")
    base = [sys.executable, "-m", "sitesteward.cli"]
    missing = subprocess.run(
        [*base, "refresh", "http://127.0.0.1:1/", "--content-root", str(tmp_path / "nope")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and "not a directory" in missing.stderr
    bad_url = subprocess.run(
        [*base, "audit", "ftp://example.test/"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad_url.returncode == 2 and "not an http(s) URL" in bad_url.stderr
    unknown = subprocess.run(
        [*base, "show", "job-missing"], env=env, capture_output=True, text=True, timeout=120
    )
    assert unknown.returncode == 2 and "no job job-missing" in unknown.stderr


def test_an_unreachable_ledger_exits_3_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SITESTEWARD_", "PREFECT_"))}
    env["SITESTEWARD_DATA_DIR"] = str(tmp_path / "data")
    env["SITESTEWARD_DATABASE_URL"] = "postgresql+psycopg://postgres@127.0.0.1:1/none"  # nothing listens
    done = subprocess.run(
        [sys.executable, "-m", "sitesteward.cli", "jobs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3
    assert done.stderr.startswith("unreachable:") and done.stderr.count("\n") == 1
