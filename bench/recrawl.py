"""Re-audit an unchanged site: the second crawl should ride on conditional requests (304s).

A cold ``sitesteward audit`` of the Python docs, then the same command again with the same
``SITESTEWARD_DATA_DIR`` (so the crawl store sends ``If-None-Match`` / ``If-Modified-Since``), both
against a Prefect server started beforehand (start-up reported apart). The peer is the cold audit of the
same run: ratio = re-audit wall time / cold wall time. The static server's access log shows how many
answers were 304s in each phase.

Target: re-audit ≤ 25% of the cold audit's wall time.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path
from typing import Any

from bench.crawl_vs_scrapy import ensure_python_docs
from bench.harness import (
    AuditRun,
    command_line,
    environment,
    prefect_server,
    print_table,
    require_crawler,
    run_audit,
    temp_dir,
    verdict,
    write_result,
)
from bench.serve import serve_directory

NAME = "recrawl"
TARGET_RATIO = 0.25


def main(argv: list[str]) -> int:
    """Run the benchmark; print the table and write ``bench/results/recrawl-*.json``."""
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}", description=__doc__.splitlines()[0])
    parser.add_argument("--max-pages", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=1800.0, help="per crawl, seconds")
    parser.add_argument("--site", type=Path, default=None, help="directory to serve (default: python3-doc)")
    parser.add_argument(
        "--audit-args", default="", help="more `sitesteward audit` options, e.g. '--concurrency 32'"
    )
    args = parser.parse_args(argv)

    root = args.site.resolve() if args.site else ensure_python_docs()
    require_crawler()
    result: dict[str, Any] = {"benchmark": NAME, "command": command_line([NAME, *argv])}
    runs: dict[str, AuditRun] = {}
    statuses: dict[str, dict[str, int]] = {}
    with temp_dir("bench-recrawl-") as work, serve_directory(root) as site, prefect_server(work) as server:
        print(
            f"serving {root} at {site.base_url} with {site.kind}; "
            f"prefect server healthy after {server.startup_seconds:.1f} s",
            flush=True,
        )
        for phase in ("cold", "reaudit"):
            offset = site.log_offset()
            runs[phase] = run_audit(
                site.base_url,
                max_pages=args.max_pages,
                data_dir=work / "data",
                prefect_home=work / "home",
                api_url=server.api_url,
                work_dir=work,
                name=f"sitesteward-{phase}",
                timeout_seconds=args.timeout,
                extra_args=shlex.split(args.audit_args),
            )
            time.sleep(0.3)  # let nginx flush its buffered access log
            statuses[phase] = site.status_counts(offset)
            print(
                f"{phase}: {runs[phase].pages} pages in {runs[phase].measurement.wall_seconds:.1f} s",
                flush=True,
            )

    cold, again = runs["cold"], runs["reaudit"]
    ratio = again.measurement.wall_seconds / cold.measurement.wall_seconds
    cold_crawl, again_crawl = cold.stats.get("duration_seconds"), again.stats.get("duration_seconds")
    crawl_ratio = float(again_crawl) / float(cold_crawl) if cold_crawl and again_crawl else None
    result.update(
        {
            "environment": environment(),
            "static_server": site.kind,
            "prefect_server_startup_seconds": round(server.startup_seconds, 2),
            "cold": {**cold.summary(), "static_server_statuses": statuses["cold"]},
            "reaudit": {**again.summary(), "static_server_statuses": statuses["reaudit"]},
            "ratio_wall": round(ratio, 3),
            "ratio_crawl_phase": round(crawl_ratio, 3) if crawl_ratio else None,
            "target_ratio_at_most": TARGET_RATIO,
        }
    )
    path = write_result(NAME, result)

    print()
    print_table(
        ["audit", "pages", "not modified", "304s served", "wall s", "crawl s", "CPU s", "peak RSS MiB"],
        [
            [
                phase,
                run.pages,
                run.stats.get("pages_not_modified"),
                statuses[phase].get("304", 0),
                run.measurement.wall_seconds,
                run.stats.get("duration_seconds"),
                run.measurement.cpu_seconds,
                run.measurement.peak_rss_mib,
            ]
            for phase, run in runs.items()
        ],
    )
    print()
    print(
        f"re-audit/cold wall time: {ratio:.0%}   target ≤ {TARGET_RATIO:.0%}: "
        f"{verdict(ratio, TARGET_RATIO, at_least=False)}"
    )
    if crawl_ratio is not None:
        print(f"re-audit/cold crawl phase (report duration_seconds): {crawl_ratio:.0%}")
    print(f"prefect server start-up (not in the times above): {server.startup_seconds:.1f} s")
    print(f"static server: {site.kind}; load average {result['environment']['load_average_1_5_15']}")
    print(f"result: {path}")
    print(f"command: {result['command']}")
    return 0
