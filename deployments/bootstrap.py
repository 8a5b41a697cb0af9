"""Idempotent setup of a Prefect server for sitesteward: work pool, block types, default blocks, variables.

Run it (``sitesteward bootstrap``) before ``prefect deploy --all``: ``prefect.yaml`` reads the variables it
creates. Everything is created only when missing, so a second run changes nothing; an existing block or
variable a person has edited is never overwritten.
"""

from __future__ import annotations

from pathlib import Path

from prefect.blocks.core import Block
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import VariableCreate, WorkPoolCreate
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker
from pydantic import BaseModel, ConfigDict, Field

from blocks import BLOCK_TYPES, LLMConfig, MarkdownContentTarget, SiteConfig
from deployments import WORK_POOL
from sitesteward.settings import get_settings

#: Where ``sitesteward demo`` and ``sitesteward serve --example-site`` serve the bundled site.
EXAMPLE_SITE_URL = "http://127.0.0.1:8765/"
#: The name of the default blocks (``SiteConfig``, ``MarkdownContentTarget``) for the example site.
EXAMPLE_BLOCK = "example-site"
#: The name of the default ``LLMConfig`` (no key: the offline drafter).
DEFAULT_LLM_BLOCK = "default"


class BootstrapReport(BaseModel):
    """What :func:`bootstrap` found and did (``kind:name`` strings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    created: list[str] = Field(default_factory=list, description="Objects created by this run.")
    existing: list[str] = Field(default_factory=list, description="Objects already there (left alone).")
    registered: list[str] = Field(default_factory=list, description="Block types registered or updated.")


def example_content_root() -> Path:
    """The content directory the example site is copied to (``<data dir>/demo/site``), absolute."""
    return (get_settings().data_dir / "demo" / "site").resolve()


def default_blocks(site_url: str, content_root: Path) -> dict[str, Block]:
    """The blocks a fresh server gets, by name (for the example site unless told otherwise).

    Args:
        site_url: The site's start URL.
        content_root: The site's Markdown content directory.

    Returns:
        ``{block name: unsaved block}``.
    """
    loopback = site_url.startswith(("http://127.", "http://localhost", "http://[::1]"))
    return {
        EXAMPLE_BLOCK: SiteConfig(base_url=site_url, allow_private=loopback, max_pages=2000),
        DEFAULT_LLM_BLOCK: LLMConfig(),
        f"{EXAMPLE_BLOCK}-content": MarkdownContentTarget(content_root=str(content_root), base_url=site_url),
    }


def bootstrap(
    *,
    work_pool: str = WORK_POOL,
    site_url: str = EXAMPLE_SITE_URL,
    content_root: Path | None = None,
) -> BootstrapReport:
    """Create what the deployments need on the current Prefect API (``PREFECT_API_URL``), if missing.

    Args:
        work_pool: The process work pool to create.
        site_url: Default for the ``site_url`` variable and the default blocks.
        content_root: Default for the ``site_content_root`` variable (default: the example site's copy).

    Returns:
        What was created, what already existed and which block types were registered.

    Raises:
        prefect.exceptions.PrefectHTTPStatusError: the API refused a request.
        httpx.ConnectError: no Prefect API answers at ``PREFECT_API_URL``.
    """
    root = (content_root or example_content_root()).resolve()
    created: list[str] = []
    existing: list[str] = []
    with get_client(sync_client=True) as client:
        _ensure_work_pool(client, work_pool, created, existing)
        for block_type in BLOCK_TYPES:
            block_type.register_type_and_schema()
        for name, block in default_blocks(site_url, root).items():
            _ensure_block(client, name, block, created, existing)
        variables = {"site_url": site_url, "site_content_root": str(root)}
        for name, value in variables.items():
            _ensure_variable(client, name, value, created, existing)
    return BootstrapReport(
        created=created,
        existing=existing,
        registered=[block_type.get_block_type_slug() for block_type in BLOCK_TYPES],
    )


def _ensure_work_pool(client: SyncPrefectClient, name: str, created: list[str], existing: list[str]) -> None:
    try:
        client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type=ProcessWorker.type,
                base_job_template=ProcessWorker.get_default_base_job_template(),
                description="sitesteward flow runs as local processes (prefect worker start --pool ...).",
            )
        )
        created.append(f"work-pool:{name}")
    else:
        existing.append(f"work-pool:{name}")


def _ensure_block(
    client: SyncPrefectClient, name: str, block: Block, created: list[str], existing: list[str]
) -> None:
    slug = block.get_block_type_slug()
    try:
        client.read_block_document_by_name(name=name, block_type_slug=slug)
    except ObjectNotFound:
        block.save(name)
        created.append(f"block:{slug}/{name}")
    else:
        existing.append(f"block:{slug}/{name}")


def _ensure_variable(
    client: SyncPrefectClient, name: str, value: str, created: list[str], existing: list[str]
) -> None:
    if client.read_variable_by_name(name) is None:
        client.create_variable(VariableCreate(name=name, value=value))
        created.append(f"variable:{name}")
    else:
        existing.append(f"variable:{name}")
