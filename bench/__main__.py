"""``python -m bench [NAME|all] [options]``: list, run one, or run the default set of benchmarks.

``all`` runs ``crawl_vs_scrapy`` and ``recrawl``; ``large_site`` runs only when named (it is long).
Options after NAME go to that benchmark (``python -m bench large_site --pages 20000``).
"""

from __future__ import annotations

import importlib
import sys

from bench.harness import BenchError

BENCHMARKS: dict[str, str] = {
    "crawl_vs_scrapy": "Python docs (~530 pages): sitesteward vs a plain Scrapy spider, pages/s and peak RSS",
    "recrawl": "re-audit of an unchanged site (conditional requests) vs the cold audit, wall time ratio",
    "large_site": "generated 100k-page site crawled at 10k/30k/100k: peak RSS, per-page time growth (long)",
    "rerun_jobs": "re-run of 200 unchanged refresh jobs vs their first run: time ratio and drafter calls",
}
DEFAULT_SET = ("crawl_vs_scrapy", "recrawl")


def _list() -> None:
    print(__doc__)
    for name, description in BENCHMARKS.items():
        print(f"  {name:<16} {description}")


def _run(name: str, argv: list[str]) -> int:
    module = importlib.import_module(f"bench.{name}")
    print(f"=== {name} ===", flush=True)
    try:
        return int(module.main(argv))
    except BenchError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return exc.exit_code


def main(argv: list[str]) -> int:
    """Dispatch; exit codes: 0 ok, 1 a run failed, 2 bad usage or a missing prerequisite, 3 no crawler."""
    if not argv or argv[0] in {"-h", "--help", "list"}:
        _list()
        return 0
    name, rest = argv[0], argv[1:]
    if name == "all":
        codes = [_run(each, rest) for each in DEFAULT_SET]
        return max(codes)
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}", file=sys.stderr)
        _list()
        return 2
    return _run(name, rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
