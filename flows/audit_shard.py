"""``audit_shard``: crawl one shard of a site-wide crawl, as its own flow run on any worker of the pool.

``audit_site`` with ``shards > 1`` and ``shard_deployment`` set starts one run of this flow's deployment
(``audit-shard`` in ``prefect.yaml``) per shard and round, so the pool's workers share the crawl. The
result (the shard's ``CrawlResult``) is persisted as JSON in Prefect's result storage, where the
coordinating run reads it back: on one machine the default local storage does; across machines set
``PREFECT_DEFAULT_RESULT_STORAGE_BLOCK`` to storage every worker reaches (S3, GCS, a shared path).
"""

# No ``from __future__ import annotations`` here: a flow served from memory (``flow.serve``,
# ``deployments.serve``) is cloudpickled by value into the run's subprocess, and Pydantic could not resolve
# string annotations of the parameter model (``CrawlConfig``, ``HostLimitSpec``) there.

from prefect import flow, task
from prefect.deployments import run_deployment
from pydantic import BaseModel, ConfigDict, Field

from sitesteward.crawl.limits import HostLimitSpec
from sitesteward.errors import TransientError
from sitesteward.models import CrawlConfig, CrawlResult
from tasks.crawl import crawl_shard


class ShardParams(BaseModel):
    """One shard of a sharded crawl (built by ``audit_site``; not meant to be typed by hand)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config: CrawlConfig = Field(description="The shard's list-mode crawl (its URLs are the start URLs).")
    site: str = Field(min_length=1, description="The site's crawl-store key (its first start URL's host).")
    index: int = Field(default=0, ge=0, le=1000, description="The shard's number in its round.")
    limit: HostLimitSpec = Field(default_factory=HostLimitSpec, description="Per-host limit across workers.")


class ShardRunFailed(TransientError):
    """A shard's deployment run did not complete (crashed worker, cancelled run): the audit fails whole."""


@flow(name="audit_shard", persist_result=True, result_serializer="json", log_prints=False)
def audit_shard(params: ShardParams) -> CrawlResult:
    """Crawl one shard's URLs and return what the crawl learnt (persisted for the coordinating run).

    Needs: network reach to the site; the crawl store in the data directory; Redis when
    ``params.limit`` says so.
    """
    return crawl_shard(params.config, params.site, params.index, params.limit)


@task(name="run_shard", retries=0, persist_result=False, task_run_name="run_shard-{params.index}")
def run_shard(deployment: str, params: ShardParams) -> CrawlResult:
    """Run one shard as a run of ``deployment`` (any worker of its pool) and return its result.

    Raises:
        ShardRunFailed: the run ended in any state but Completed.
    """
    run = run_deployment(
        name=deployment,
        parameters={"params": params.model_dump(mode="json")},
        timeout=None,
        as_subflow=True,
    )
    state = run.state
    if state is None or not state.is_completed():
        name = state.name if state is not None else "unknown"
        raise ShardRunFailed(f"shard {params.index} run {run.id} of {deployment} ended {name}")
    value = state.result()
    # The JSON serializer gives the model back when its class imports, else a plain dict.
    return value if isinstance(value, CrawlResult) else CrawlResult.model_validate(value)
