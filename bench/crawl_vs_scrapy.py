"""Crawl the Python docs (python3-doc, ~530 real HTML pages) with Scrapy and with sitesteward, same run.

(a) the plain Scrapy spider of ``bench/scrapy_peer.py``; (b) ``sitesteward audit`` against a Prefect
server the benchmark started beforehand (its start-up time is reported apart, its memory is not counted);
(c) the same in ephemeral mode, for reference (its in-process API server *is* counted: it is a child).
Each crawler starts cold (fresh ``SITESTEWARD_DATA_DIR`` and ``PREFECT_HOME``). With ``--rounds N``
(a) and (b) alternate N times against the one server and the median round is reported: the ratio of a
pair measured back to back, as this machine's speed drifts within minutes. Pages/s are pages over
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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Round:
    """Scrapy then sitesteward (server), measured back to back: one ratio, taken close together in time."""

    scrapy: Measurement
    scrapy_summary: dict[str, Any]
    scrapy_statuses: dict[str, int]
    served: AuditRun

    @property
    def scrapy_pps(self) -> float:
        return self.scrapy_summary["pages"] / self.scrapy.wall_seconds if self.scrapy.wall_seconds else 0.0

    @property
    def ratio(self) -> float | None:
        return self.served.pages_per_second / self.scrapy_pps if self.scrapy_pps else None

    @property
    def crawl_ratio(self) -> float | None:
        seconds = self.scrapy_summary["crawl_seconds"]
        crawl_pps = self.served.stats.get("pages_per_second")
        if not seconds or not crawl_pps:
            return None
        return float(crawl_pps) / (self.scrapy_summary["pages"] / seconds)

    def summary(self) -> dict[str, Any]:
        return {
            "scrapy_wall_seconds": round(self.scrapy.wall_seconds, 3),
            "sitesteward_wall_seconds": round(self.served.measurement.wall_seconds, 3),
            "sitesteward_crawl_seconds": self.served.stats.get("duration_seconds"),
            "ratio_pages_per_second": round(self.ratio, 3) if self.ratio else None,
            "ratio_crawl_phase_pages_per_second": round(self.crawl_ratio, 3) if self.crawl_ratio else None,
            "sitesteward_peak_rss_mib": round(self.served.measurement.peak_rss_mib, 1),
        }


def median_round(rounds: list[Round]) -> Round:
    """The round whose wall-time ratio is the median (the lower middle one for an even count)."""
    ranked = sorted(rounds, key=lambda item: item.ratio or 0.0)
    return ranked[(len(ranked) - 1) // 2]


def main(argv: list[str]) -> int:
    """Run the benchmark; print the table and write ``bench/results/crawl_vs_scrapy-*.json``."""
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}", description=__doc__.splitlines()[0])
    parser.add_argument("--max-pages", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=1800.0, help="per crawl, seconds")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help=(
            "measure Scrapy then sitesteward this many times, alternating, and report the median round "
            "(this machine's speed drifts by a third within minutes: pairs taken together cancel it)"
        ),
    )
    parser.add_argument("--skip-ephemeral", action="store_true", help="skip (c), ephemeral mode")
    parser.add_argument(
        "--audit-args", default="", help="more `sitesteward audit` options, e.g. '--concurrency 32'"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    docs = ensure_python_docs()
    require_crawler()
    result: dict[str, Any] = {"benchmark": NAME, "command": command_line([NAME, *argv])}
    rounds: list[Round] = []
    with temp_dir("bench-crawl-") as work, serve_directory(docs) as site:
        print(f"serving {docs} at {site.base_url} with {site.kind}", flush=True)
        result["static_server"] = site.kind
        # The server runs through every round, as a deployed one would (idle while Scrapy crawls).
        with prefect_server(work) as server:
            print(f"prefect server healthy after {server.startup_seconds:.1f} s", flush=True)
            for index in range(args.rounds):
                offset = site.log_offset()
                scrapy, scrapy_summary = run_scrapy(
                    site, work / f"round-{index}", args.max_pages, args.timeout
                )
                statuses = site.status_counts(offset)
                print(f"scrapy: {scrapy_summary['pages']} pages in {scrapy.wall_seconds:.1f} s", flush=True)
                served = run_audit(
                    site.base_url,
                    max_pages=args.max_pages,
                    data_dir=work / f"data-server-{index}",
                    prefect_home=work / f"home-server-{index}",
                    api_url=server.api_url,
                    work_dir=work,
                    name=f"sitesteward-server-{index}",
                    timeout_seconds=args.timeout,
                    extra_args=shlex.split(args.audit_args),
                )
                print(
                    f"sitesteward (server): {served.pages} pages in {served.measurement.wall_seconds:.1f} s",
                    flush=True,
                )
                rounds.append(Round(scrapy, scrapy_summary, statuses, served))
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

    middle = median_round(rounds)
    scrapy, scrapy_summary, served = middle.scrapy, middle.scrapy_summary, middle.served
    ratio, crawl_ratio = middle.ratio, middle.crawl_ratio
    # Memory is judged on the worst round, not the median one.
    rss = max(item.served.measurement.peak_rss_mib for item in rounds)
    result.update(
        {
            "environment": environment(),
            "prefect_server_startup_seconds": round(server.startup_seconds, 2),
            "rounds": [item.summary() for item in rounds],
            "median_round": rounds.index(middle),
            "scrapy": {
                **measurement_summary(scrapy),
                **scrapy_summary,
                "pages_per_second": round(middle.scrapy_pps, 2),
                "static_server_statuses": middle.scrapy_statuses,
            },
            "sitesteward_server": served.summary(),
            "sitesteward_server_peak_rss_mib_all_rounds": round(rss, 1),
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
            middle.scrapy_pps,
            scrapy.cpu_seconds,
            scrapy.peak_rss_mib,
        ],
        _audit_row("sitesteward (server)", served),
    ]
    if ephemeral:
        rows.append(_audit_row("sitesteward (ephemeral)", ephemeral))
    print()
    if len(rounds) > 1:
        print(f"round {rounds.index(middle) + 1} of {len(rounds)} (the median ratio); every round:")
        print_table(
            ["round", "scrapy s", "sitesteward s", "crawl s", "ratio", "crawl-phase ratio"],
            [
                [
                    number,
                    item.scrapy.wall_seconds,
                    item.served.measurement.wall_seconds,
                    float(item.served.stats.get("duration_seconds") or 0.0),
                    _x(item.ratio),
                    _x(item.crawl_ratio),
                ]
                for number, item in enumerate(rounds, start=1)
            ],
        )
        print()
    print_table(["crawler", "pages", "wall s", "pages/s", "CPU s", "peak RSS MiB"], rows)
    print()
    print(
        f"sitesteward/scrapy pages/s (wall, start-up included): {_x(ratio)}   target ≥ {TARGET_RATIO:.0f}x: "
        f"{verdict(ratio, TARGET_RATIO, at_least=True)}"
    )
    print(f"sitesteward/scrapy pages/s (crawl phase only):        {_x(crawl_ratio)}")
    print(
        f"peak RSS sitesteward (server mode{', worst round' if len(rounds) > 1 else ''}): {rss:.0f} MiB   "
        f"target ≤ {TARGET_RSS_MIB:.0f} MiB: {verdict(rss, TARGET_RSS_MIB, at_least=False)}"
    )
    print(f"prefect server start-up (not in the times above): {server.startup_seconds:.1f} s")
    print(f"static server: {site.kind}; load average {result['environment']['load_average_1_5_15']}")
    print(f"result: {path}")
    print(f"command: {result['command']}")
    return 0


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
