"""Crawl the Python docs (python3-doc, ~530 real HTML pages) with Scrapy and with sitesteward, same run.

(a) the plain Scrapy spider of ``bench/scrapy_peer.py``; (b) ``sitesteward audit`` against a Prefect
server the benchmark started beforehand (its start-up time is reported apart, its memory is not counted);
(c) the same in ephemeral mode, for reference (its in-process API server *is* counted: it is a child).
Each crawler starts cold (fresh ``SITESTEWARD_DATA_DIR`` and ``PREFECT_HOME``). Pages/s are pages over
the process's wall time, start-up included, for both crawlers; the crawl-phase rates (Scrapy's own
start/finish stats, sitesteward's report ``duration_seconds``) are printed beside them.

Targets: sitesteward (b) ≥ 8x Scrapy's pages/s; peak RSS of its process tree ≤ 250 MiB.

If python3-doc is missing it is installed with apt-get when running as root with apt available;
otherwise the command is printed and the benchmark exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    AuditRun,
    BenchError,
    command_line,
    environment,
    measurement_summary,
    prefect_server,
    print_table,
    require_crawler,
    run_audit,
    temp_dir,
    verdict,
    write_result,
)
from bench.measure import Measurement, run_measured
from bench.serve import StaticServer, serve_directory

NAME = "crawl_vs_scrapy"
DOCS = Path("/usr/share/doc/python3/html")
APT_COMMAND = "apt-get update && apt-get install -y python3-doc"
TARGET_RATIO = 8.0
TARGET_RSS_MIB = 250.0


def ensure_python_docs(docs: Path = DOCS) -> Path:
    """Return the resolved docs directory, installing python3-doc first when possible.

    Raises:
        BenchError: the docs are missing and cannot be installed here (the apt command is in the message).
    """
    if not _has_html(docs) and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"python3-doc is missing: running `{APT_COMMAND}` ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "python3-doc"]):
            subprocess.run(step, env=env, check=False, timeout=900, capture_output=True)
    if not _has_html(docs):
        raise BenchError(f"{docs} has no HTML pages: install them with `{APT_COMMAND}` (as root)", 2)
    return docs.resolve()


def _has_html(docs: Path) -> bool:
    return docs.exists() and any(docs.resolve().glob("*.html"))


def run_scrapy(site: StaticServer, work: Path, max_pages: int, timeout: float) -> tuple[Measurement, Any]:
    """Run the Scrapy peer measured; return the measurement and its JSON summary."""
    out = work / "scrapy-summary.json"
    command = [sys.executable, "-m", "bench.scrapy_peer", site.base_url, "--max-pages", str(max_pages)]
    command += ["--out", str(out), "--items", str(work / "scrapy-items.jsonl")]
    measurement = run_measured(
        command,
        timeout_seconds=timeout,
        log_dir=work / "logs",
        name="scrapy",
        cwd=Path(__file__).parent.parent,
    )
    if measurement.timed_out or measurement.returncode != 0 or not out.exists():
        raise BenchError(f"scrapy peer failed (exit {measurement.returncode})\n{measurement.tail()}", 1)
    return measurement, json.loads(out.read_text())


def _audit_row(label: str, run: AuditRun) -> list[object]:
    m = run.measurement
    return [label, run.pages, m.wall_seconds, run.pages_per_second, m.cpu_seconds, m.peak_rss_mib]


def main(argv: list[str]) -> int:
    """Run the benchmark; print the table and write ``bench/results/crawl_vs_scrapy-*.json``."""
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}", description=__doc__.splitlines()[0])
    parser.add_argument("--max-pages", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=1800.0, help="per crawl, seconds")
    parser.add_argument("--skip-ephemeral", action="store_true", help="skip (c), ephemeral mode")
    parser.add_argument(
        "--audit-args", default="", help="more `sitesteward audit` options, e.g. '--concurrency 32'"
    )
    args = parser.parse_args(argv)

    docs = ensure_python_docs()
    require_crawler()
    result: dict[str, Any] = {"benchmark": NAME, "command": command_line([NAME, *argv])}
    with temp_dir("bench-crawl-") as work, serve_directory(docs) as site:
        print(f"serving {docs} at {site.base_url} with {site.kind}", flush=True)
        result["static_server"] = site.kind
        offset = site.log_offset()
        scrapy, scrapy_summary = run_scrapy(site, work, args.max_pages, args.timeout)
        scrapy_statuses = site.status_counts(offset)
        print(f"scrapy: {scrapy_summary['pages']} pages in {scrapy.wall_seconds:.1f} s", flush=True)

        with prefect_server(work) as server:
            print(f"prefect server healthy after {server.startup_seconds:.1f} s", flush=True)
            served = run_audit(
                site.base_url,
                max_pages=args.max_pages,
                data_dir=work / "data-server",
                prefect_home=work / "home-server",
                api_url=server.api_url,
                work_dir=work,
                name="sitesteward-server",
                timeout_seconds=args.timeout,
                extra_args=shlex.split(args.audit_args),
            )
        print(f"sitesteward (server): {served.pages} pages in {served.measurement.wall_seconds:.1f} s")
        ephemeral = None
        if not args.skip_ephemeral:
            ephemeral = run_audit(
                site.base_url,
                max_pages=args.max_pages,
                data_dir=work / "data-ephemeral",
                prefect_home=work / "home-ephemeral",
                api_url=None,
                work_dir=work,
                name="sitesteward-ephemeral",
                timeout_seconds=args.timeout,
                extra_args=shlex.split(args.audit_args),
            )
        time.sleep(0.3)  # let nginx flush its buffered access log

    scrapy_pps = scrapy_summary["pages"] / scrapy.wall_seconds
    ratio = served.pages_per_second / scrapy_pps if scrapy_pps else None
    scrapy_crawl_pps = (
        scrapy_summary["pages"] / scrapy_summary["crawl_seconds"] if scrapy_summary["crawl_seconds"] else None
    )
    crawl_pps = served.stats.get("pages_per_second")
    crawl_ratio = float(crawl_pps) / scrapy_crawl_pps if crawl_pps and scrapy_crawl_pps else None
    result.update(
        {
            "environment": environment(),
            "prefect_server_startup_seconds": round(server.startup_seconds, 2),
            "scrapy": {
                **measurement_summary(scrapy),
                **scrapy_summary,
                "pages_per_second": round(scrapy_pps, 2),
                "static_server_statuses": scrapy_statuses,
            },
            "sitesteward_server": served.summary(),
            "sitesteward_ephemeral": ephemeral.summary() if ephemeral else None,
            "ratio_pages_per_second": round(ratio, 3) if ratio else None,
            "ratio_crawl_phase_pages_per_second": round(crawl_ratio, 3) if crawl_ratio else None,
            "targets": {"ratio_at_least": TARGET_RATIO, "peak_rss_mib_at_most": TARGET_RSS_MIB},
        }
    )
    path = write_result(NAME, result)

    rows: list[list[object]] = [
        [
            "scrapy",
            scrapy_summary["pages"],
            scrapy.wall_seconds,
            scrapy_pps,
            scrapy.cpu_seconds,
            scrapy.peak_rss_mib,
        ],
        _audit_row("sitesteward (server)", served),
    ]
    if ephemeral:
        rows.append(_audit_row("sitesteward (ephemeral)", ephemeral))
    print()
    print_table(["crawler", "pages", "wall s", "pages/s", "CPU s", "peak RSS MiB"], rows)
    print()
    rss = served.measurement.peak_rss_mib
    print(
        f"sitesteward/scrapy pages/s (wall, start-up included): {_x(ratio)}   target ≥ {TARGET_RATIO:.0f}x: "
        f"{verdict(ratio, TARGET_RATIO, at_least=True)}"
    )
    print(f"sitesteward/scrapy pages/s (crawl phase only):        {_x(crawl_ratio)}")
    print(
        f"peak RSS sitesteward (server mode): {rss:.0f} MiB   target ≤ {TARGET_RSS_MIB:.0f} MiB: "
        f"{verdict(rss, TARGET_RSS_MIB, at_least=False)}"
    )
    print(f"prefect server start-up (not in the times above): {server.startup_seconds:.1f} s")
    print(f"static server: {site.kind}; load average {result['environment']['load_average_1_5_15']}")
    print(f"result: {path}")
    print(f"command: {result['command']}")
    return 0


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
