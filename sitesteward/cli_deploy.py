"""``sitesteward bootstrap | serve``: set up a Prefect server for sitesteward and serve its deployments.

Both talk to the Prefect API named by ``PREFECT_API_URL`` (environment or ``prefect config set``), never
an ephemeral one: what they create has to outlive this process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sitesteward.settings import get_settings

out = Console()
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _require_api() -> str:
    """The configured Prefect API URL, or exit 2 with the command that sets one."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise _fail(
            "no Prefect API configured: start one (`prefect server start`) and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api (or `prefect config set PREFECT_API_URL=...`)"
        )
    return str(url)


def bootstrap(
    site_url: Annotated[
        str, typer.Option(help="The site to audit (the site_url variable and default blocks).")
    ] = "http://127.0.0.1:8765/",
    content_root: Annotated[
        Path | None,
        typer.Option(help="Its Markdown content directory (default: the example site's copy)."),
    ] = None,
    work_pool: Annotated[str, typer.Option(help="The process work pool to create.")] = "sitesteward-process",
) -> None:
    """Create the work pool, block types, default blocks and variables the deployments need (if missing)."""
    url = _require_api()
    import httpx

    from deployments.bootstrap import bootstrap as run_bootstrap

    try:
        report = run_bootstrap(work_pool=work_pool, site_url=site_url, content_root=content_root)
    except httpx.HTTPError as exc:
        raise _fail(f"the Prefect API at {url} is unreachable: {exc}", code=3) from exc
    for item in report.created:
        out.print(f"created   {item}")
    for item in report.existing:
        out.print(f"exists    {item}")
    out.print(f"registered block types: {', '.join(report.registered)}")
    out.print("next: prefect --no-prompt deploy --all")


@contextmanager
def _example_site(port: int, sources_port: int) -> Iterator[str]:
    """Serve the bundled site's copy (``<data dir>/demo/site``) and its sources on loopback."""
    from sitesteward.cli import EXAMPLES, _prepare_demo_site
    from sitesteward.demo.server import SiteServer, SourcesServer

    root = get_settings().data_dir / "demo" / "site"
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        with SourcesServer(EXAMPLES / "sources", port=sources_port) as sources:
            _prepare_demo_site(root, sources.base_url)
            with SiteServer(root, port=port, sources_url=sources.base_url) as site:
                out.print(f"serving the example site at {site.base_url}/ (content: {root.resolve()})")
                yield site.base_url
    except OSError as exc:
        raise _fail(f"cannot serve the example site on ports {port}/{sources_port}: {exc}") from exc


def serve(
    only: Annotated[
        list[str] | None, typer.Option(help="Serve only this deployment of prefect.yaml (repeatable).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Flow runs executed at the same time.")] = None,
    example_site: Annotated[
        bool, typer.Option(help="Also serve the bundled example site on loopback (what bootstrap points at).")
    ] = False,
    deployments: Annotated[
        bool, typer.Option(help="Serve the deployments (--no-deployments: only the example site).")
    ] = True,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Example site port.")] = 8765,
    sources_port: Annotated[int, typer.Option(min=0, max=65535, help="Example sources port.")] = 8766,
) -> None:
    """Serve prefect.yaml's deployments from this process (no work pool or worker needed) until Ctrl-C."""
    url = _require_api()
    if not deployments and not example_site:
        raise _fail("nothing to serve: drop --no-deployments or add --example-site")
    import threading

    from deployments.serve import build_deployments

    with _example_site(port, sources_port) if example_site else _nothing():
        if not deployments:
            out.print("Ctrl-C stops the example site")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                return
        try:
            built = build_deployments(only)
        except ValueError as exc:
            raise _fail(str(exc)) from exc
        from prefect import serve as prefect_serve

        out.print(f"serving {', '.join(d.name for d in built)} against {url}")
        prefect_serve(*built, limit=limit)


@contextmanager
def _nothing() -> Iterator[None]:
    yield
