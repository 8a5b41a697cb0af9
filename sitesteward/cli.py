"""The ``sitesteward`` command: the thin face that starts flows (the one module here that may use Prefect).

Exit codes: 0 success; 1 the job ran and reported failures (``--fail-on`` findings, a failed job);
2 bad usage or configuration (one line on stderr); 3 the Prefect API or a service is unreachable.
"""

from __future__ import annotations

import atexit
import gc
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

from sitesteward.aio import quick_gil_handoff
from sitesteward.errors import ConfigurationError, InvalidUrl, StewardError, TransientError
from sitesteward.settings import get_settings

app = typer.Typer(
    help="Keep a website's content accurate: crawl, audit, draft, approve, publish once, verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)  # one-line errors, never wrapped
out = Console()

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _quiet_prefect(verbose: bool, *, home: Path | None = None) -> None:
    # Prefect reads its own settings from the environment at import time; the CLI decides how
    # chatty the run logs are before the first prefect import.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The ephemeral API server takes 10-20 s to start on a small, busy machine; the default is 20 s.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if home is not None and "PREFECT_API_URL" not in os.environ:
        # Without a server to talk to, keep the ephemeral API's database beside our own data so
        # the demo never shares (or locks) the user's ~/.prefect database.
        home.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("PREFECT_HOME", str(home.resolve()))


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
    url: str,
    *,
    max_pages: int,
    allow_private: bool,
    concurrency: int,
    list_mode: bool = False,
    check_external: bool = True,
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
            check_external=check_external,
        )
    except InvalidUrl as exc:
        raise _fail(str(exc)) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _fail(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from exc


def run_audit(params: Any, *, show_progress: bool) -> Any:
    """Run the ``audit_site`` flow in this process and return its summary."""
    from flows.audit_site import audit_site

    # For the whole run, not only the crawl: Prefect's engine, event and log threads hand the GIL to the
    # flow's thread many times a task as well (sitesteward.aio says what this measured).
    with _crawl_progress(show_progress), quick_gil_handoff():
        return audit_site(params)


def _print_counts(site: str, pages: int, by_code: dict[str, int]) -> None:
    total = sum(by_code.values())
    table = Table(title=f"Audit of {site}: {pages} pages, {total} findings")
    table.add_column("code")
    table.add_column("count", justify="right")
    for code, count in sorted(by_code.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(code, str(count))
    out.print(table)


def _print_audit(summary: Any) -> None:
    _print_counts(summary.site, summary.pages, dict(summary.stats.get("findings_by_code", {})))
    if summary.report_json:
        out.print(f"report: {summary.report_json}")


@app.command()
def audit(
    url: Annotated[
        str | None, typer.Argument(help="Start URL of the site to audit (or give --site-block).")
    ] = None,
    site_block: Annotated[
        str | None,
        typer.Option(
            help="A SiteConfig block name: the crawl and thresholds come from it (crawl options ignored)."
        ),
    ] = None,
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
    check_external: Annotated[
        bool, typer.Option(help="Check links to other hosts (--no-check-external skips them).")
    ] = True,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option(help="Show Prefect's run logs.")] = False,
) -> None:
    """Crawl and audit a site through the ``audit_site`` flow, printing a summary."""
    _quiet_prefect(verbose)
    from flows.audit_site import AuditParams

    if (url is None) == (site_block is None):
        raise _fail("give a start URL or --site-block NAME (one of the two)")
    config = None
    if url is not None:
        config = _crawl_config(
            url,
            max_pages=max_pages,
            allow_private=allow_private,
            concurrency=concurrency,
            list_mode=list_mode,
            check_external=check_external,
        )
    params = AuditParams(
        crawl=config,
        site_block=site_block,
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
def refresh(
    url: Annotated[str, typer.Argument(help="Start URL of the site.")],
    content_root: Annotated[
        Path, typer.Option(help="The site's Markdown content directory (publish target).")
    ],
    site_id: Annotated[
        str | None, typer.Option(help="Stable site name for job identity (default: host).")
    ] = None,
    budget: Annotated[int, typer.Option(min=0, help="Jobs started or resumed in this run.")] = 20,
    max_pages: Annotated[int, typer.Option(min=1, help="Fetch at most this many pages.")] = 10_000,
    max_links: Annotated[int, typer.Option(min=0, max=10, help="Internal links suggested per page.")] = 2,
    allow_private: Annotated[bool, typer.Option(help="Allow private/loopback addresses.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the job outcomes as JSON.")] = False,
    verbose: Annotated[bool, typer.Option(help="Show Prefect's run logs.")] = False,
) -> None:
    """Audit the site and run a refresh job for each page that needs one; drafts wait for approval."""
    _quiet_prefect(verbose)
    from flows.audit_site import AuditParams
    from flows.refresh_site import RefreshSiteParams, refresh_site
    from sitesteward.urls import host_of

    if not content_root.is_dir():
        raise _fail(f"content root {content_root} is not a directory")
    config = _crawl_config(url, max_pages=max_pages, allow_private=allow_private, concurrency=8)
    params = RefreshSiteParams(
        audit=AuditParams(crawl=config),
        site_id=site_id or host_of(url),
        content_root=str(content_root.resolve()),
        budget=budget,
        max_links=max_links,
    )
    with _crawl_progress(not json_output and sys.stderr.isatty()):
        summary = refresh_site(params)
    if json_output:
        out.print_json(json.dumps([job.model_dump(mode="json") for job in summary.jobs]))
        return
    _print_counts(summary.site, summary.pages, summary.findings_by_code)
    for job in summary.jobs:
        out.print(f"{job.job_id}  {job.state}" + (f" ({job.stop_reason})" if job.stop_reason else ""))
    waiting = sum(1 for job in summary.jobs if job.state == "awaiting_review")
    out.print(f"{waiting} drafts await review: sitesteward jobs --state awaiting_review")
    if any(job.state == "failed" for job in summary.jobs):
        raise typer.Exit(1)


def _prepare_demo_site(site_root: Path, sources_url: str) -> None:
    """Copy the bundled site once, writing the sources server's address into the copy.

    The bundled Markdown cites ``{{sources}}``; the copy carries real URLs, so edits and citations in the
    content directory are what the crawler sees (and a later run on another port is rewritten).
    """
    marker = site_root / ".sources-url"
    if not site_root.exists():
        shutil.copytree(EXAMPLES / "site", site_root)
    old = marker.read_text().strip() if marker.exists() else "{{sources}}"
    if old != sources_url:
        for path in site_root.rglob("*.md"):
            text = path.read_text(encoding="utf-8")
            if old in text:
                path.write_text(text.replace(old, sources_url), encoding="utf-8")
        marker.write_text(sources_url)


def _review_jobs(job_ids: list[str], *, approve_all: bool) -> None:
    """Ask for a decision on each parked job (or approve all), then let each job run on."""
    from rich.markdown import Markdown

    from sitesteward.cli_jobs import decide
    from sitesteward.ledger import Decision, Ledger

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    for job_id in job_ids:
        ledger = Ledger.open(get_settings().ledger_url)
        try:
            job = ledger.get_job(job_id)
            review = ledger.latest_evidence(job_id, "review")
        finally:
            ledger.close()
        if approve_all:
            decide(job_id, Decision.approve, "demo (--approve-all)", None, resume=True)
            continue
        if not interactive:
            out.print(f"{job_id} awaits review: sitesteward approve {job_id} --reviewer NAME")
            continue
        out.rule(f"{job.page_url}")
        if review is not None:
            out.print(Markdown(str(review.payload.get("markdown", ""))))
        answer = typer.prompt("approve, reject or skip?", default="skip").strip().lower()
        if answer in {"approve", "a", "reject", "r"}:
            reviewer = typer.prompt("your name")
            decision = Decision.approve if answer.startswith("a") else Decision.reject
            decide(job_id, decision, reviewer, None, resume=True)


@app.command()
def demo(
    approve_all: Annotated[
        bool, typer.Option(help="Approve every draft as reviewer 'demo' (CI; SITESTEWARD_APPROVE_ALL).")
    ] = False,
    fresh: Annotated[bool, typer.Option(help="Start over from the bundled site (drop demo state).")] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Site port on 127.0.0.1 (0: any free).")] = 8765,
    sources_port: Annotated[int, typer.Option(min=0, max=65535, help="Sources server port.")] = 8766,
    verbose: Annotated[bool, typer.Option(help="Show Prefect's run logs.")] = False,
) -> None:
    """Serve the bundled example site on loopback and run the whole loop on it.

    Audit → plan jobs → compare with cited sources → draft → validate → ask for approval (in a terminal;
    ``--approve-all`` answers for CI) → publish exactly once → verify live → print the job table.
    Running it again on the unchanged site drafts nothing, asks nothing and writes nothing.
    """
    settings = get_settings()
    _quiet_prefect(verbose, home=settings.data_dir / "prefect")
    from flows.audit_site import AuditParams
    from flows.refresh_site import RefreshSiteParams, refresh_site
    from sitesteward.cli_jobs import print_jobs
    from sitesteward.demo.server import SiteServer, SourcesServer
    from sitesteward.ledger import Ledger

    demo_dir = settings.data_dir / "demo"
    site_root = demo_dir / "site"
    if fresh and settings.data_dir.exists():
        shutil.rmtree(settings.data_dir)
        settings.data_dir.mkdir(parents=True)
    demo_dir.mkdir(parents=True, exist_ok=True)
    try:
        sources = SourcesServer(EXAMPLES / "sources", port=sources_port)
        sources.start()
    except OSError as exc:
        raise _fail(f"cannot serve the sources on port {sources_port}: {exc} (try --sources-port 0)") from exc
    try:
        _prepare_demo_site(site_root, sources.base_url)
        try:
            site = SiteServer(site_root, port=port, sources_url=sources.base_url)
            site.start()
        except OSError as exc:
            raise _fail(f"cannot serve the site on port {port}: {exc} (try --port 0)") from exc
        try:
            out.print(f"serving the example site at {site.base_url} (content: {site_root})")
            config = _crawl_config(site.base_url + "/", max_pages=500, allow_private=True, concurrency=8)
            params = RefreshSiteParams(
                audit=AuditParams(
                    crawl=config,
                    report_json=str(demo_dir / "report.json"),
                    report_csv=str(demo_dir / "findings.csv"),
                ),
                site_id="larkspur-demo",
                content_root=str(site_root),
                budget=50,
            )
            with _crawl_progress(sys.stderr.isatty()):
                summary = refresh_site(params)
            _print_counts(summary.site, summary.pages, summary.findings_by_code)
            waiting = [job.job_id for job in summary.jobs if job.state == "awaiting_review"]
            out.print(
                f"{summary.pages_needing_refresh} pages need a refresh; {len(waiting)} drafts await review"
            )
            _review_jobs(waiting, approve_all=approve_all or settings.approve_all)
            ledger = Ledger.open(settings.ledger_url)
            try:
                print_jobs(ledger, ledger.list_jobs(site="larkspur-demo"), title="Jobs on the example site")
            finally:
                ledger.close()
            out.print(f"report: {demo_dir / 'report.json'}  ·  content: {site_root}")
            ledger = Ledger.open(settings.ledger_url)
            try:
                failed = [j for j in summary.jobs if ledger.get_job(j.job_id).state.value == "failed"]
            finally:
                ledger.close()
            if failed:
                raise typer.Exit(1)
        finally:
            site.stop()
    finally:
        sources.stop()


def _register_commands() -> None:
    from sitesteward import cli_deploy, cli_jobs

    for command in (cli_jobs.jobs, cli_jobs.show, cli_jobs.approve, cli_jobs.reject, cli_jobs.sweep):
        app.command()(command)
    for command in (cli_deploy.bootstrap, cli_deploy.serve):
        app.command()(command)


_register_commands()


def main() -> None:
    """Entry point of the ``sitesteward`` console script."""
    # Registered first, so it runs after every other exit handler (Prefect's log and event drains among
    # them). The interpreter's last garbage collection walks every object the run left behind (0.4-0.5 s
    # after an audit of the 530-page docs site) to free memory the OS takes back anyway: frozen objects are
    # not walked. Every other exit handler and finaliser still runs.
    atexit.register(gc.freeze)
    try:
        app()
    except TransientError as exc:  # a database, site or API that did not answer
        console.print(f"[bold red]unreachable:[/] {exc}", highlight=False)
        sys.exit(3)
    except StewardError as exc:  # anything the commands did not translate themselves
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
