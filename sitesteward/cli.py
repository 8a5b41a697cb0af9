"""The ``sitesteward`` command: the thin face that starts flows (the one module here that may use Prefect).

Exit codes: 0 success; 1 the job ran and reported failures (``--fail-on`` findings, a failed job);
2 bad usage or configuration (one line on stderr); 3 the Prefect API or a service is unreachable.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sitesteward.errors import ConfigurationError, InvalidUrl, StewardError
from sitesteward.settings import get_settings

app = typer.Typer(
    help="Keep a website's content accurate: crawl, audit, draft, approve, publish once, verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _quiet_prefect(verbose: bool) -> None:
    # Prefect reads its own settings from the environment at import time; the CLI decides how
    # chatty the run logs are before the first prefect import.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")


@contextmanager
def _crawl_progress(enabled: bool) -> Iterator[None]:
    """A live progress bar fed by the crawl task's in-process progress events."""
    if not enabled:
        yield
        return
    from tasks.progress import add_listener, remove_listener

    progress = Progress(
        TextColumn("[bold]crawling[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("queued {task.fields[queued]} · errors {task.fields[errors]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task_id = progress.add_task("crawl", total=None, queued=0, errors=0)

    def listener(event: Any) -> None:
        progress.update(
            task_id,
            completed=event.fetched,
            total=event.fetched + event.queued,
            queued=event.queued,
            errors=event.errors,
        )

    add_listener(listener)
    try:
        with progress:
            yield
    finally:
        remove_listener(listener)


def _crawl_config(
    url: str, *, max_pages: int, allow_private: bool, concurrency: int, list_mode: bool = False
) -> Any:
    from sitesteward.models import CrawlConfig
    from sitesteward.urls import normalize_url

    try:
        normalize_url(url)
        return CrawlConfig(
            start_urls=[url],
            max_pages=max_pages,
            allow_private=allow_private or None,
            concurrency_per_host=concurrency,
            list_mode=list_mode,
        )
    except InvalidUrl as exc:
        raise _fail(str(exc)) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _fail(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from exc


def run_audit(params: Any, *, show_progress: bool) -> Any:
    """Run the ``audit_site`` flow in this process and return its summary."""
    from flows.audit_site import audit_site

    with _crawl_progress(show_progress):
        return asyncio.run(audit_site(params))


def _print_audit(summary: Any) -> None:
    stats = summary.stats
    by_code: dict[str, int] = dict(stats.get("by_code", {}))  # type: ignore[arg-type]
    table = Table(title=f"Audit of {summary.site}: {summary.pages} pages, {len(summary.findings)} findings")
    table.add_column("code")
    table.add_column("count", justify="right")
    for code, count in sorted(by_code.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(code, str(count))
    out.print(table)
    if summary.report_json:
        out.print(f"report: {summary.report_json}")


@app.command()
def audit(
    url: Annotated[str, typer.Argument(help="Start URL of the site to audit.")],
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    csv: Annotated[Path | None, typer.Option(help="Write the findings as CSV here.")] = None,
    max_pages: Annotated[int, typer.Option(min=1, help="Fetch at most this many pages.")] = 10_000,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Concurrent requests per host.")] = 8,
    allow_private: Annotated[
        bool, typer.Option(help="Allow private/loopback addresses (local sites and tests).")
    ] = False,
    list_mode: Annotated[
        bool, typer.Option("--list", help="Fetch only the given URL, no spidering.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option(help="Show Prefect's run logs.")] = False,
) -> None:
    """Crawl and audit a site through the ``audit_site`` flow, printing a summary."""
    _quiet_prefect(verbose)
    from flows.audit_site import AuditParams

    config = _crawl_config(
        url, max_pages=max_pages, allow_private=allow_private, concurrency=concurrency, list_mode=list_mode
    )
    params = AuditParams(
        crawl=config,
        report_json=str(report) if report else None,
        report_csv=str(csv) if csv else None,
    )
    try:
        summary = run_audit(params, show_progress=not json_output and sys.stderr.isatty())
    except ConfigurationError as exc:
        raise _fail(str(exc)) from exc
    if json_output:
        out.print_json(json.dumps(summary.model_dump(mode="json", exclude={"findings"})))
    else:
        _print_audit(summary)


@app.command()
def demo(
    approve_all: Annotated[
        bool, typer.Option(help="Approve every draft as reviewer 'demo' (CI; SITESTEWARD_APPROVE_ALL).")
    ] = False,
    fresh: Annotated[bool, typer.Option(help="Start over from the bundled site (drop demo state).")] = False,
    verbose: Annotated[bool, typer.Option(help="Show Prefect's run logs.")] = False,
) -> None:
    """Serve the bundled example site on loopback and run the maintenance loop on it."""
    _quiet_prefect(verbose)
    from flows.audit_site import AuditParams
    from sitesteward.demo.server import serve_demo

    settings = get_settings()
    demo_dir = settings.data_dir / "demo"
    site_root = demo_dir / "site"
    if fresh and demo_dir.exists():
        shutil.rmtree(demo_dir)
    if not site_root.exists():
        shutil.copytree(EXAMPLES / "site", site_root)
    report_path = demo_dir / "report.json"
    with serve_demo(site_root, EXAMPLES / "sources") as (site, _sources):
        out.print(f"serving the example site at {site.base_url} (content: {site_root})")
        config = _crawl_config(site.base_url, max_pages=500, allow_private=True, concurrency=8)
        params = AuditParams(
            crawl=config, report_json=str(report_path), report_csv=str(demo_dir / "findings.csv")
        )
        summary = run_audit(params, show_progress=sys.stderr.isatty())
        _print_audit(summary)


def main() -> None:
    """Entry point of the ``sitesteward`` console script."""
    try:
        app()
    except StewardError as exc:  # anything the commands did not translate themselves
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
