"""Re-running unchanged refresh jobs must be nearly free and must not call the drafter.

Generates a site of N pages (default 200) whose titles are too long, so every page becomes a refresh job
that the offline drafter answers with a ``set_title`` edit. ``refresh_site`` runs once cold (audit, plan,
compare, draft, link, validate, park for review), then again on the unchanged site. Reports both wall
times, their ratio (target <= 10%) and the drafter calls of the second run (target: zero, read from the
ledger's per-step attempt counts).

    python -m bench rerun_jobs [--pages 200]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from bench.harness import command_line, prefect_server, print_table, temp_dir, verdict, write_result

TARGET_RATIO = 0.10

_BODY = " ".join(
    "Static hosting keeps pages fast, cheap and simple to operate for small teams that publish often."
    for _ in range(30)
)


def generate_site(root: Path, pages: int) -> None:
    """``pages`` Markdown pages with over-long titles, linked from the home page."""
    root.mkdir(parents=True)
    links = []
    for number in range(pages):
        name = f"page-{number:04d}"
        title = f"Page {number} of the generated site, with a title far too long for search results"
        description = f"Generated page {number}: a benchmark page about static hosting for small teams."
        (root / f"{name}.md").write_text(
            f"---\ntitle: {title}\ndescription: {description}\n---\n# Page {number}\n\n{_BODY}\n"
        )
        links.append(f"- [Page {number}](/{name}/)")
    (root / "index.md").write_text(
        "---\ntitle: Generated site home page\ndescription: The home page of the generated benchmark site,"
        " which links every page.\n---\n# Home\n\n" + _BODY + "\n\n" + "\n".join(links) + "\n"
    )


def _draft_attempts() -> int:
    from sitesteward.ledger import Ledger
    from sitesteward.settings import get_settings

    with Ledger.open(get_settings().ledger_url) as ledger:
        return sum(
            step.attempts
            for job in ledger.list_jobs(site="bench")
            for step in ledger.list_steps(job.job_id)
            if step.step == "draft"
        )


def _run_site(params: Any) -> tuple[float, Any]:
    from flows.refresh_site import refresh_site

    started = time.perf_counter()
    summary = refresh_site(params)
    return time.perf_counter() - started, summary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench rerun_jobs")
    parser.add_argument("--pages", type=int, default=200)
    args = parser.parse_args(argv)
    with temp_dir("steward-rerun-") as work, prefect_server(work) as server:
        os.environ.update(
            PREFECT_API_URL=server.api_url,
            PREFECT_LOGGING_LEVEL="WARNING",
            SITESTEWARD_DATA_DIR=str(work / "data"),
            SITESTEWARD_ALLOW_PRIVATE="true",
        )
        from flows.audit_site import AuditParams
        from flows.refresh_site import RefreshSiteParams
        from sitesteward.demo.server import SiteServer
        from sitesteward.models import CrawlConfig

        content = work / "site"
        generate_site(content, args.pages)
        with SiteServer(content) as site:
            crawl = CrawlConfig(
                start_urls=[site.base_url + "/"], allow_private=True, max_pages=args.pages + 50
            )
            params = RefreshSiteParams(
                audit=AuditParams(crawl=crawl),
                site_id="bench",
                content_root=str(content),
                budget=args.pages + 10,
                max_links=0,
            )
            cold_seconds, cold = _run_site(params)
            drafts_after_cold = _draft_attempts()
            rerun_seconds, rerun = _run_site(params)
            drafts_after_rerun = _draft_attempts()
    waiting = sum(1 for job in cold.jobs if job.state == "awaiting_review")
    ratio = rerun_seconds / cold_seconds
    result = {
        "pages": args.pages,
        "jobs_parked_for_review": waiting,
        "cold_seconds": cold_seconds,
        "rerun_seconds": rerun_seconds,
        "rerun_over_cold": ratio,
        "drafter_calls_cold": drafts_after_cold,
        "drafter_calls_rerun": drafts_after_rerun - drafts_after_cold,
        "jobs_run_again": len(rerun.jobs),
        "prefect_server_startup_seconds": server.startup_seconds,
        "command": command_line(["rerun_jobs", *argv]),
    }
    print_table(
        ["run", "seconds", "drafter calls"],
        [
            ["cold (audit + jobs to review)", cold_seconds, drafts_after_cold],
            ["re-run, unchanged", rerun_seconds, drafts_after_rerun - drafts_after_cold],
        ],
    )
    met = verdict(ratio, TARGET_RATIO, at_least=False)
    print(f"re-run / cold = {ratio:.1%} (target <= {TARGET_RATIO:.0%}: {met})")
    print(f"drafter calls in the re-run: {result['drafter_calls_rerun']} (target 0)")
    print(f"result: {write_result('rerun_jobs', result)}")
    print(f"command: {result['command']}")
    ok = ratio <= TARGET_RATIO and result["drafter_calls_rerun"] == 0 and waiting == args.pages
    return 0 if ok else 1
