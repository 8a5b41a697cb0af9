"""Crawl a generated 100,000-page site at 10%, 30% and 100% of its size: memory and per-page time.

The site is generated on disk (deterministic; ~1 KB pages) in a temp directory and served by the same
static server as the other benchmarks (nginx when installed), so the server is never the bottleneck.
Page ``i`` links to its parent, to its ten children ``10i+1 .. 10i+10`` (a tree five levels deep
for 100k pages) and to three cross links; ``robots.txt`` names a sitemap index of 50,000-URL
sitemaps (written once the port is known, since sitemaps need absolute URLs).

Each size is a cold ``sitesteward audit --max-pages SIZE`` against one Prefect server started
beforehand. The peer is the smallest crawl of the same run: per-page time at the full size over
per-page time at 10% (1.0 = linear). Targets: peak RSS ≤ 500 MiB at every size; ratio close to 1.

    python -m bench large_site                 # 100,000 pages: crawls of 10k, 30k, 100k
    python -m bench large_site --pages 20000   # quick: crawls of 2k, 6k, 20k
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import time
from pathlib import Path
from typing import Any

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

NAME = "large_site"
BRANCHING = 10
CROSS_LINKS = 3
SITEMAP_CHUNK = 50_000
TARGET_RSS_MIB = 500.0
_VOCABULARY = (
    "site content page audit crawl link sitemap title heading summary update service policy guide "
    "release support account pricing feature product team contact about history news article report"
)
_WORDS = _VOCABULARY.split()


def page_path(index: int) -> str:
    """URL path of page ``index`` (``/`` for the home page)."""
    return "/" if index == 0 else f"/p/{index // 1000:03d}/{index}.html"


def page_links(index: int, pages: int) -> list[int]:
    """Indexes page ``index`` links to: parent, children, cross links (deterministic)."""
    links: list[int] = []
    if index:
        links.append((index - 1) // BRANCHING)
    links.extend(
        child for child in range(index * BRANCHING + 1, index * BRANCHING + BRANCHING + 1) if child < pages
    )
    links.extend((index * 7919 + k * 104_729 + 13) % pages for k in range(1, CROSS_LINKS + 1))
    return links


def render_page(index: int, pages: int) -> str:
    """The HTML of page ``index`` (links are root-relative, so the port does not matter)."""
    words = " ".join(_WORDS[(index * 31 + j * 17) % len(_WORDS)] for j in range(60))
    items = "".join(
        f'<li><a href="{page_path(target)}">Page {target}</a></li>' for target in page_links(index, pages)
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Page {index} of the bench site</title>"
        f'<meta name="description" content="Generated page {index} of {pages} for the benchmark.">'
        f"</head><body><main><h1>Page {index}</h1><p>Page {index}: {words}.</p>"
        f"<ul>{items}</ul></main></body></html>\n"
    )


def generate_site(root: Path, pages: int) -> Path:
    """Write ``pages`` pages under ``root`` (world-readable, for nginx workers); return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    made: set[Path] = set()
    for index in range(pages):
        relative = "index.html" if index == 0 else page_path(index).lstrip("/")
        target = root / relative
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.parent.chmod(0o755)
            made.add(target.parent)
        target.write_text(render_page(index, pages))
    return root


def write_sitemaps(root: Path, base_url: str, pages: int) -> list[Path]:
    """Write ``robots.txt``, ``sitemap.xml`` (an index) and its chunks for ``base_url``; return them."""
    base = base_url.rstrip("/")
    chunks: list[Path] = []
    for number, start in enumerate(range(0, pages, SITEMAP_CHUNK), 1):
        urls = "".join(
            f"<url><loc>{base}{page_path(i)}</loc></url>\n"
            for i in range(start, min(start + SITEMAP_CHUNK, pages))
        )
        chunk = root / f"sitemap-{number}.xml"
        chunk.write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{urls}</urlset>\n'
        )
        chunks.append(chunk)
    entries = "".join(f"<sitemap><loc>{base}/{chunk.name}</loc></sitemap>\n" for chunk in chunks)
    index = root / "sitemap.xml"
    index.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{entries}</sitemapindex>\n'
    )
    robots = root / "robots.txt"
    robots.write_text(f"User-agent: *\nAllow: /\nSitemap: {base}/sitemap.xml\n")
    for path in (index, robots, *chunks):
        path.chmod(0o644)
    return [robots, index, *chunks]


def crawl_sizes(pages: int) -> list[int]:
    """10%, 30% and 100% of the site."""
    return sorted({max(1, pages // 10), max(1, pages * 3 // 10), pages})


def main(argv: list[str]) -> int:
    """Run the benchmark; print the table and write ``bench/results/large_site-*.json``."""
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}", description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100_000, help="site size (crawls at 10%%, 30%%, 100%%)")
    parser.add_argument(
        "--timeout-per-page", type=float, default=0.1, help="seconds (at least 600 per crawl)"
    )
    parser.add_argument(
        "--audit-args", default="", help="more `sitesteward audit` options, e.g. '--concurrency 32'"
    )
    args = parser.parse_args(argv)
    if args.pages < 10:
        parser.error("--pages must be at least 10")

    require_crawler()
    result: dict[str, Any] = {
        "benchmark": NAME,
        "command": command_line([NAME, *argv]),
        "site_pages": args.pages,
    }
    runs: dict[int, AuditRun] = {}
    with temp_dir("bench-large-") as work:
        work.chmod(0o755)
        started = time.perf_counter()
        site_root = generate_site(work / "site", args.pages)
        result["generate_seconds"] = round(time.perf_counter() - started, 2)
        print(f"generated {args.pages:,} pages in {result['generate_seconds']:.1f} s", flush=True)
        with serve_directory(site_root) as site, prefect_server(work) as server:
            write_sitemaps(site_root, site.base_url, args.pages)
            result["static_server"] = site.kind
            result["prefect_server_startup_seconds"] = round(server.startup_seconds, 2)
            print(
                f"serving at {site.base_url} with {site.kind}; "
                f"prefect server healthy after {server.startup_seconds:.1f} s",
                flush=True,
            )
            for size in crawl_sizes(args.pages):
                runs[size] = run_audit(
                    site.base_url,
                    max_pages=size,
                    data_dir=work / f"data-{size}",
                    prefect_home=work / f"home-{size}",
                    api_url=server.api_url,
                    work_dir=work,
                    name=f"sitesteward-{size}",
                    timeout_seconds=max(600.0, size * args.timeout_per_page),
                    extra_args=shlex.split(args.audit_args),
                )
                m = runs[size].measurement
                print(
                    f"{size:,}: {runs[size].pages:,} pages in {m.wall_seconds:.1f} s, "
                    f"peak RSS {m.peak_rss_mib:.0f} MiB",
                    flush=True,
                )

    smallest, largest = runs[min(runs)], runs[max(runs)]
    per_page = {size: _ms_per_page(run) for size, run in runs.items()}
    marginal = _marginal_ms_per_page(runs)
    growth = per_page[max(runs)] / per_page[min(runs)] if per_page[min(runs)] else None
    peak = max(run.measurement.peak_rss_mib for run in runs.values())
    result.update(
        {
            "environment": environment(),
            "crawls": {
                str(size): {
                    **run.summary(),
                    "ms_per_page": round(per_page[size], 3),
                    "marginal_ms_per_page": round(marginal[size], 3) if size in marginal else None,
                }
                for size, run in runs.items()
            },
            "per_page_time_ratio_largest_vs_smallest": round(growth, 3) if growth else None,
            "peak_rss_mib": round(peak, 1),
            "target_peak_rss_mib_at_most": TARGET_RSS_MIB,
        }
    )
    path = write_result(NAME, result)

    print()
    print_table(
        ["max pages", "pages", "wall s", "ms/page", "marginal ms/page", "crawl s", "CPU s", "peak RSS MiB"],
        [
            [
                size,
                run.pages,
                run.measurement.wall_seconds,
                per_page[size],
                marginal.get(size),
                run.stats.get("duration_seconds"),
                run.measurement.cpu_seconds,
                run.measurement.peak_rss_mib,
            ]
            for size, run in runs.items()
        ],
    )
    print()
    print(
        f"per-page time {largest.pages:,} vs {smallest.pages:,} pages: "
        f"{'n/a' if growth is None else f'{growth:.2f}x'} (1.00x = linear)"
    )
    if len(marginal) >= 2:
        sizes = sorted(marginal)
        print(
            "marginal ms/page (extra wall time / extra pages between consecutive sizes, start-up cancels): "
            + " -> ".join(f"{marginal[size]:.2f}" for size in sizes)
        )
    met = verdict(peak, TARGET_RSS_MIB, at_least=False)
    print(f"peak RSS {peak:.0f} MiB   target ≤ {TARGET_RSS_MIB:.0f} MiB: {met}")
    print(
        f"static server: {result['static_server']}; generated site: {args.pages:,} pages; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"result: {path}")
    print(f"command: {result['command']}")
    return 0


def _ms_per_page(run: AuditRun) -> float:
    return 1000.0 * run.measurement.wall_seconds / run.pages if run.pages else 0.0


def _marginal_ms_per_page(runs: dict[int, AuditRun]) -> dict[int, float]:
    """Extra wall ms per extra page from the previous size (fixed start-up costs cancel out)."""
    sizes = sorted(runs)
    marginal: dict[int, float] = {}
    for smaller, larger in itertools.pairwise(sizes):
        extra_pages = runs[larger].pages - runs[smaller].pages
        if extra_pages > 0:
            extra_ms = 1000.0 * (
                runs[larger].measurement.wall_seconds - runs[smaller].measurement.wall_seconds
            )
            marginal[larger] = extra_ms / extra_pages
    return marginal
