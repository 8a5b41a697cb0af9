"""What the benchmarks share: a Prefect server, the measured ``sitesteward audit`` run, results, tables.

Every child process gets a timeout and runs in its own session; every server is stopped in a
``finally``; every temp directory is removed. Results go to ``bench/results/`` (gitignored) as
``{name}-{UTC timestamp}.json`` plus ``{name}-latest.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.measure import Measurement, run_measured
from bench.serve import free_port, stop_process_group

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
PREFECT_START_TIMEOUT_SECONDS = 180.0


class BenchError(RuntimeError):
    """A benchmark could not run (missing package, crawler not importable, a server did not start)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ------------------------------------------------------------------------------------------ set-up


def sitesteward_command() -> list[str]:
    """argv prefix that runs the ``sitesteward`` console script of this environment."""
    script = BIN / "sitesteward"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sitesteward.cli"]


def require_crawler() -> None:
    """Fail with a clear message when the crawler or the audit flow cannot be imported yet.

    Raises:
        BenchError: the import failed (exit code 3); the message carries the error's last line.
    """
    probe = "import flows.audit_site, sitesteward.crawl, sitesteward.cli"
    try:
        done = subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError("importing the crawler took over 120 s", 3) from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchError(f"the sitesteward crawler is not importable yet ({probe!r}): {last}", 3)


def clean_env(**overrides: str | None) -> dict[str, str]:
    """This process's environment without Prefect/sitesteward settings that would leak in, plus overrides.

    An override of ``None`` removes the variable.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "SITESTEWARD_")) or key == "PREFECT_LOGGING_LEVEL"
    }
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@dataclass(frozen=True)
class PrefectServer:
    """A ``prefect server start`` the benchmark started (SQLite in a temp PREFECT_HOME)."""

    api_url: str
    startup_seconds: float
    pid: int


@contextlib.contextmanager
def prefect_server(work_dir: Path) -> Iterator[PrefectServer]:
    """Start ``prefect server start`` on a free loopback port; stop it on exit, whatever happens.

    The UI is disabled (nothing looks at it during a benchmark). Start-up time is measured from
    spawning to the first ``200`` from ``/api/health``.

    Raises:
        BenchError: the server was not healthy within 180 s (the log tail is in the message).
    """
    home = work_dir / "prefect-server-home"
    home.mkdir(parents=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = clean_env(PREFECT_HOME=str(home), PREFECT_UI_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false")
    log_path = work_dir / "prefect-server.log"
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    try:
        while True:
            if process.poll() is not None or time.perf_counter() - started > PREFECT_START_TIMEOUT_SECONDS:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise BenchError(f"prefect server did not become healthy: {tail}")
            if _healthy(api_url):
                break
            time.sleep(0.1)
        yield PrefectServer(api_url=api_url, startup_seconds=time.perf_counter() - started, pid=process.pid)
    finally:
        stop_process_group(process, grace_seconds=15.0)


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A temp directory removed on exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class AuditRun:
    """One measured ``sitesteward audit`` subprocess and what its report says."""

    measurement: Measurement
    report: Mapping[str, Any]

    @property
    def stats(self) -> Mapping[str, Any]:
        return dict(self.report.get("stats", {}))

    @property
    def pages(self) -> int:
        """Pages fetched with an HTTP answer (the report's ``pages_fetched``)."""
        return int(self.stats.get("pages_fetched", self.stats.get("pages", 0)))

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.measurement.wall_seconds if self.measurement.wall_seconds else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-able numbers of this run."""
        stats = self.stats
        return {
            **measurement_summary(self.measurement),
            "pages": self.pages,
            "pages_per_second": round(self.pages_per_second, 2),
            "report_pages": stats.get("pages"),
            "pages_ok_200": self.report.get("pages_ok"),
            "pages_not_modified": stats.get("pages_not_modified"),
            "pages_errors": stats.get("pages_errors"),
            "link_checks": stats.get("link_checks"),
            "crawl_duration_seconds": stats.get("duration_seconds"),
            "crawl_pages_per_second": stats.get("pages_per_second"),
        }


def measurement_summary(measurement: Measurement) -> dict[str, Any]:
    """JSON-able fields of a measurement."""
    return {
        "command": measurement.command,
        "returncode": measurement.returncode,
        "timed_out": measurement.timed_out,
        "wall_seconds": round(measurement.wall_seconds, 3),
        "cpu_seconds": round(measurement.cpu_seconds, 3),
        "peak_rss_mib": round(measurement.peak_rss_mib, 1),
        "peak_processes": measurement.peak_processes,
        "rss_samples": measurement.samples,
    }


def run_audit(
    url: str,
    *,
    max_pages: int,
    data_dir: Path,
    prefect_home: Path,
    api_url: str | None,
    work_dir: Path,
    name: str,
    timeout_seconds: float,
    extra_args: Sequence[str] = (),
) -> AuditRun:
    """Run ``sitesteward audit URL --allow-private --max-pages N --report R`` measured.

    Args:
        url: start URL.
        max_pages: ``--max-pages``.
        data_dir: ``SITESTEWARD_DATA_DIR`` (crawl store; reuse it for a re-crawl).
        prefect_home: ``PREFECT_HOME`` of the client.
        api_url: ``PREFECT_API_URL`` of a running server, or None for ephemeral mode.
        work_dir: where the report and the logs go.
        name: stem of the report and log files.
        timeout_seconds: kill the process tree after this long.
        extra_args: more CLI options.

    Returns:
        The run.

    Raises:
        BenchError: the command failed, timed out or wrote no report (with its output's tail).
    """
    report_path = work_dir / f"{name}-report.json"
    command = [
        *sitesteward_command(),
        "audit",
        url,
        "--allow-private",
        "--max-pages",
        str(max_pages),
        "--report",
        str(report_path),
        *extra_args,
    ]
    env = clean_env(
        PREFECT_HOME=str(prefect_home),
        PREFECT_API_URL=api_url,
        SITESTEWARD_DATA_DIR=str(data_dir),
        # Ephemeral mode: Prefect's 20 s default start-up timeout is too short on a busy 2-CPU machine.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=None if api_url else "180",
    )
    measurement = run_measured(
        command, env=env, cwd=ROOT, timeout_seconds=timeout_seconds, log_dir=work_dir / "logs", name=name
    )
    if measurement.timed_out:
        raise BenchError(f"{name}: timed out after {timeout_seconds:.0f} s\n{measurement.tail()}", 1)
    if measurement.returncode not in (0, 1) or not report_path.exists():
        raise BenchError(
            f"{name}: `{' '.join(command)}` exited {measurement.returncode}\n{measurement.tail()}", 1
        )
    report = json.loads(report_path.read_text())
    rows = report.get("pages", [])
    pages_ok = sum(1 for row in rows if row.get("status") == 200 and not row.get("error"))
    return AuditRun(measurement=measurement, report={"stats": report.get("stats", {}), "pages_ok": pages_ok})


# ---------------------------------------------------------------------------------------- output


def environment() -> dict[str, Any]:
    """Where the numbers were measured: CPU count, load, versions, commit."""
    versions: dict[str, str] = {}
    for package in ("prefect", "scrapy", "httpx", "lxml", "psutil"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[package] = version(package)
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "load_average_1_5_15": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": commit,
    }


def write_result(name: str, result: Mapping[str, Any]) -> Path:
    """Write ``result`` to ``bench/results/{name}-{timestamp}.json`` and ``{name}-latest.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(result, indent=2, default=str) + "\n"
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(text)
    (RESULTS / f"{name}-latest.json").write_text(text)
    return path


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain fixed-width table (first column left-aligned, the others right-aligned)."""
    cells = [[str(h) for h in headers], *[[_cell(value) for value in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        line = "  ".join(
            value.ljust(widths[i]) if i == 0 else value.rjust(widths[i]) for i, value in enumerate(row)
        )
        print(line)
        if index == 0:
            print("  ".join("-" * width for width in widths))


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def verdict(value: float | None, target: float, *, at_least: bool) -> str:
    """``target ≥ X: met`` / ``missed`` for a printed line."""
    if value is None:
        return "n/a"
    met = value >= target if at_least else value <= target
    return "met" if met else "MISSED"


def command_line(argv: Sequence[str]) -> str:
    """The exact command that reproduces a benchmark run."""
    return "python -m bench " + " ".join(argv)
