"""Sharded crawls and the per-host limit across processes, against real Redis, HTTP servers and Prefect.

* The Redis limiter: worker processes hammering one host never have more requests in flight than the
  limit (the HTTP server measures it), a SIGKILLed holder's slot comes back after its lease, the rate
  is shared.
* Sharded crawls equal one crawl: the bundled demo site (sitemap, robots, redirects, orphans) and a
  generated site without a sitemap (rounds, depth limit, the previous crawl as a head start).
* The ``audit_site`` flow with shards (same findings as unsharded) and with a ``SiteConfig`` block name.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from sitesteward import audit
from sitesteward.crawl import CrawlStore, crawl_site, site_key
from sitesteward.crawl.limits import HostLimitSpec, LimiterUnavailable, RedisHostLimiter, hold
from sitesteward.crawl.shard import (
    PinnedSiteStore,
    ShardPlanner,
    crawl_limited,
    discovery_config,
    partition,
    shard_config,
)
from sitesteward.models import AuditThresholds, CrawlConfig, CrawlResult, Page
from tests.integration.conftest import Demo, quick_config, run
from tests.server import RecordedRequest, Reply, ScriptedServer, generated_site

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def namespace() -> str:
    """A Redis key prefix of this test alone (other suites share the server)."""
    return f"sitesteward-test:{uuid.uuid4().hex[:12]}"


def _spec(redis_url: str, namespace: str) -> HostLimitSpec:
    return HostLimitSpec(backend="redis", url=redis_url, namespace=namespace)


class ConcurrencyMeter:
    """A route handler that answers slowly and records how many requests were in flight at once."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.in_flight = 0
        self.peak = 0
        self.served = 0
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        time.sleep(self.delay)
        with self._lock:
            self.in_flight -= 1
            self.served += 1
        return Reply(body=f"<html><head><title>{request.path}</title></head><body><p>x</p></body></html>")


# ------------------------------------------------------------------------------------ Redis limiter

_CRAWLER = """
import asyncio, json, sys
from sitesteward.crawl.limits import HostLimitSpec
from sitesteward.crawl.shard import crawl_limited
from sitesteward.models import CrawlConfig

urls, redis_url, namespace = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
config = CrawlConfig(start_urls=urls, list_mode=True, allow_private=True, use_sitemaps=False,
                     check_external=False, concurrency_per_host=4, max_pages=len(urls), timeout_seconds=20)
spec = HostLimitSpec(backend="redis", url=redis_url, namespace=namespace)
result = asyncio.run(crawl_limited(config, limit=spec))
print(sum(1 for page in result.pages if page.status == 200))
"""


@pytest.mark.redis
@pytest.mark.scenario(
    name="per-host limit across worker processes",
    faults="three crawler processes, each allowed 4 requests per host, hammer one slow host at once",
    checks="the host never sees more than the shared limit (4) in flight, and does see 4; all pages served",
)
def test_processes_sharing_a_redis_limit_never_exceed_it(
    server: ScriptedServer, redis_url: str, namespace: str
) -> None:
    meter = ConcurrencyMeter(delay=0.1)
    server.handle_prefix("/p/", meter)
    server.route("/robots.txt", status=404)
    batches = [[server.url(f"/p/{worker}-{i}") for i in range(12)] for worker in range(3)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _CRAWLER, json.dumps(urls), redis_url, namespace],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for urls in batches
    ]
    outputs = [worker.communicate(timeout=60) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == ["12", "12", "12"]
    assert meter.served == 36
    # Alone, each process would have 4 in flight; together, without the limiter, up to 12.
    assert meter.peak == 4


_HOLDER = """
import asyncio, sys
from sitesteward.crawl.limits import RedisHostLimiter

async def main() -> None:
    url, namespace, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
    limiter = RedisHostLimiter.from_url(url, 1, lease_seconds=lease, namespace=namespace)
    await limiter.acquire("site.test")
    print("held", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


@pytest.mark.redis
@pytest.mark.scenario(
    name="crawler killed while holding a host slot",
    faults="SIGKILL of a process holding the only slot of a host (limit 1, lease 1.5 s)",
    checks="the slot stays taken until the lease ends, then another process gets it; no leak, no overlap",
)
def test_a_killed_holders_slot_comes_back_after_its_lease(redis_url: str, namespace: str) -> None:
    lease = 1.5
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, redis_url, namespace, str(lease)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        held_at = time.monotonic()
        assert line.strip() == "held", holder.stderr.read() if holder.stderr else ""
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for stream in (holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()

    async def take_it() -> tuple[int, float, int]:
        limiter = RedisHostLimiter.from_url(redis_url, 1, lease_seconds=5, namespace=namespace)
        try:
            taken_before = await limiter.in_use("site.test")
            token = await asyncio.wait_for(limiter.acquire("site.test"), timeout=lease + 3)
            waited_until = time.monotonic()
            taken_during = await limiter.in_use("site.test")
            await limiter.release("site.test", token)
            return taken_before, waited_until, taken_during
        finally:
            await limiter.aclose()

    taken_before, got_at, taken_during = asyncio.run(take_it())
    assert taken_before == 1  # the dead process's slot still counts...
    assert got_at - held_at >= lease - 0.2  # ...until its lease ends (clock slack: Redis vs local)
    assert got_at - held_at < lease + 2.0
    assert taken_during == 1  # the new holder alone


@pytest.mark.redis
def test_redis_limiter_bounds_tasks_of_many_clients_and_shares_the_rate(
    redis_url: str, namespace: str
) -> None:
    async def scenario() -> tuple[int, float, list[int]]:
        limiters = [RedisHostLimiter.from_url(redis_url, 3, namespace=namespace) for _ in range(3)]
        in_flight = peak = 0
        samples: list[int] = []

        async def one(limiter: RedisHostLimiter) -> None:
            nonlocal in_flight, peak
            async with hold(limiter, "h.test"):
                in_flight += 1
                peak = max(peak, in_flight)
                samples.append(await limiter.in_use("h.test"))
                await asyncio.sleep(0.02)
                in_flight -= 1

        try:
            await asyncio.gather(*(one(limiters[i % 3]) for i in range(30)))
            rated = [
                RedisHostLimiter.from_url(redis_url, 10, requests_per_second=20, namespace=namespace + ":r")
                for _ in range(2)
            ]
            begin = time.monotonic()
            tokens = await asyncio.gather(*(rated[i % 2].acquire("r.test") for i in range(9)))
            elapsed = time.monotonic() - begin
            for i, token in enumerate(tokens):
                await rated[i % 2].release("r.test", token)
            for limiter in rated:
                await limiter.aclose()
        finally:
            for limiter in limiters:
                await limiter.aclose()
        return peak, elapsed, samples

    peak, elapsed, samples = asyncio.run(scenario())
    assert peak == 3 and max(samples) <= 3
    assert elapsed >= 8 / 20 - 0.05  # 9 starts at 20/s across two clients: 8 gaps of 50 ms


def test_an_unreachable_redis_fails_the_crawl_before_any_request(server: ScriptedServer) -> None:
    server.page("/", "<p>never asked</p>")
    spec = HostLimitSpec(backend="redis", url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    with pytest.raises(LimiterUnavailable, match="does not answer"):
        run(crawl_limited(quick_config(server.url("/")), limit=spec))
    assert not server.requests  # never unlimited: no request went out


# ----------------------------------------------------------------------------------- sharded crawls


async def _sharded(
    config: CrawlConfig, shards: int, limit: HostLimitSpec, *, store_path: Path | None = None
) -> tuple[CrawlResult, int]:
    """The flow's loop without Prefect: discovery, rounds of concurrent shards, merge."""
    hints: list[str] = []
    if store_path is not None:
        with CrawlStore(store_path) as store:
            hints = list(store.previous_hashes(site_key(config)))
    planner = ShardPlanner(config, await crawl_limited(discovery_config(config), limit=limit), hints=hints)
    while urls := planner.next_round():
        parts = [part for part in partition(urls, shards) if part]
        stores = [PinnedSiteStore(store_path, planner.site) if store_path else None for _ in parts]
        try:
            results = await asyncio.gather(
                *(
                    crawl_limited(
                        shard_config(config, part, shards=shards, shared_limit=True), store=store, limit=limit
                    )
                    for part, store in zip(parts, stores, strict=True)
                )
            )
        finally:
            for store in stores:
                if store is not None:
                    store.close()
        for result in results:
            planner.add(result)
    return planner.result(), planner.rounds


def _facts(result: CrawlResult) -> dict[str, tuple[object, ...]]:
    def facts(page: Page) -> tuple[object, ...]:
        data = page.data
        return (
            page.status,
            page.final_url,
            page.depth,
            page.in_sitemap,
            page.error,
            data.title if data else None,
            data.text_hash if data else None,
            len(data.links) if data else 0,
        )

    return {page.url: facts(page) for page in result.pages}


def _findings(
    result: CrawlResult, today: date = date(2026, 6, 1), thresholds: AuditThresholds | None = None
) -> list[tuple[str, str, str, str]]:
    thresholds = thresholds or AuditThresholds()
    per_page = [f for page in result.pages for f in audit.audit_page(page, thresholds, today=today)]
    found = audit.audit_site(result, per_page, thresholds)
    return sorted((f.code, f.url, f.target or "", f.detail) for f in found)


@pytest.mark.redis
@pytest.mark.scenario(
    name="sharded crawl of the demo site",
    faults="none: three shards crawl in rounds under one Redis host limit",
    checks="same pages (status, depth, sitemap flag, title, text hash), link checks, robots list and "
    "findings as one unsharded crawl",
)
def test_sharded_crawl_equals_one_crawl_on_the_demo_site(demo: Demo, redis_url: str, namespace: str) -> None:
    config = CrawlConfig(start_urls=[demo.site.base_url + "/"], allow_private=True, max_pages=200)
    one = run(crawl_site(config))
    sharded, rounds = run(_sharded(config, 3, _spec(redis_url, namespace)))
    assert rounds >= 2  # the sitemap's URLs first, then the links only pages name
    assert len(one.pages) >= 20
    # Same pages and facts; depths are breadth-first, so never longer than one crawl's (whose workers race).
    assert _without_depth(sharded) == _without_depth(one)
    depth = {page.url: page.depth for page in one.pages}
    assert all(page.depth <= depth[page.url] for page in sharded.pages)
    assert sorted(c.url for c in sharded.link_checks) == sorted(c.url for c in one.link_checks)
    assert sorted(sharded.robots_disallowed) == sorted(one.robots_disallowed)
    assert sharded.sitemap_entries == one.sitemap_entries
    assert sharded.out_of_budget == one.out_of_budget
    findings = _findings(sharded)
    assert findings == _findings(one)
    assert {"orphan_page", "broken_link", "redirected_link"} <= {code for code, *_ in findings}


def _generated_depths(pages: int, fan_out: int, max_depth: int) -> dict[str, int]:
    """Breadth-first depths of ``generated_site``'s pages (its link rule, independently of the crawler)."""
    depths = {0: 0}
    frontier = [0]
    while frontier:
        following = []
        for i in frontier:
            if depths[i] == max_depth:
                continue
            children = [t for t in range(i * fan_out + 1, (i + 1) * fan_out + 1) if t < pages]
            for target in [*children, (i + 1) % pages, 0, 1]:
                if target not in depths:
                    depths[target] = depths[i] + 1
                    following.append(target)
        frontier = following
    return {f"/p/{i}": depth for i, depth in depths.items()}


def _without_depth(result: CrawlResult) -> dict[str, tuple[object, ...]]:
    return {url: facts[:2] + facts[3:] for url, facts in _facts(result).items()}


@pytest.mark.redis
def test_sharded_spider_without_sitemap_rounds_depth_and_the_previous_crawl(
    server: ScriptedServer, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    generated_site(server, 80, links_per_page=3)
    server.route("/robots.txt", status=404)
    limit = _spec(redis_url, namespace)
    config = quick_config(server.url("/p/0"), concurrency_per_host=4)
    store_path = tmp_path / "store.sqlite"
    base = server.url("")

    one = run(crawl_site(config))
    first, rounds = run(_sharded(config, 3, limit, store_path=store_path))
    assert len(one.pages) == 80 and _without_depth(first) == _without_depth(one)
    # Depths are breadth-first (one crawl's may be longer: its workers race), one round per level.
    depths = {page.url.removeprefix(base): page.depth for page in first.pages}
    assert depths == _generated_depths(80, 3, max_depth=50)
    assert all(page.depth >= depths[page.url.removeprefix(base)] for page in one.pages)
    assert rounds == max(depths.values()) + 1 >= 4
    with CrawlStore(store_path) as store:  # every shard saved its snapshots under the site's key
        assert set(store.previous_hashes(site_key(config))) == {page.url for page in first.pages}

    # Next time the previous crawl seeds round 0: one round. Pages now out of reach (max_depth 2) are
    # fetched once as hints, then dropped: the result is what a crawl to depth 2 holds.
    shallow = config.model_copy(update={"max_depth": 2})
    hits_before = len(server.requests)
    again, rounds_again = run(_sharded(shallow, 3, limit, store_path=store_path))
    assert rounds_again == 1
    expected = _generated_depths(80, 3, max_depth=2)
    assert {page.url.removeprefix(base): page.depth for page in again.pages} == expected
    assert len(expected) < 80
    assert _without_depth(again) == {
        url: f for url, f in _without_depth(first).items() if url in _facts(again)
    }
    fetched = [r.path for r in server.requests[hits_before:] if r.path.startswith("/p/")]
    assert sorted(fetched) == sorted(f"/p/{i}" for i in range(80))  # every hint once, nothing twice
    assert again.out_of_budget > 0


# --------------------------------------------------------------------------------------- the flows


@pytest.mark.prefect
@pytest.mark.redis
@pytest.mark.usefixtures("prefect_api")
def test_audit_flow_in_shards_finds_what_one_crawl_finds(demo: Demo, redis_url: str, namespace: str) -> None:
    from flows.audit_site import AuditParams, audit_site

    crawl = CrawlConfig(start_urls=[demo.site.base_url + "/"], allow_private=True, max_pages=200)
    sharded = audit_site(AuditParams(crawl=crawl, shards=3, host_limit=_spec(redis_url, namespace)))
    # The reference: one crawl, audited by the same domain checks the flow's tasks run.
    one = run(crawl_site(crawl))
    assert sharded.pages == len(one.pages) >= 20
    expected = {(code, url, target) for code, url, target, _ in _findings(one, date.today())}
    assert {(f.code, f.url, f.target or "") for f in sharded.findings} == expected
    assert {"orphan_page", "duplicate_title", "broken_link"} & {code for code, *_ in expected}


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_api")
def test_audit_flow_takes_a_site_config_block_by_name(demo: Demo) -> None:
    from blocks.site import SiteConfig
    from flows.audit_site import AuditParams, audit_site
    from sitesteward.errors import ConfigurationError

    name = f"test-site-{uuid.uuid4().hex[:8]}"
    SiteConfig(
        base_url=demo.site.base_url + "/",
        allow_private=True,
        max_pages=200,
        requests_per_second=None,
        thresholds=AuditThresholds(title_max=20),
    ).save(name)
    by_name = audit_site(AuditParams(site_block=name))
    # The block's values reached the crawl and the audit: its start URL, budget and title threshold.
    one = run(
        crawl_site(CrawlConfig(start_urls=[demo.site.base_url + "/"], allow_private=True, max_pages=200))
    )
    expected = {(code, url) for code, url, *_ in _findings(one, date.today(), AuditThresholds(title_max=20))}
    assert by_name.site == one.site and by_name.pages == len(one.pages) >= 20
    assert {(f.code, f.url) for f in by_name.findings} == expected
    titles = [f for f in by_name.findings if f.code == "title_length"]
    assert len(titles) > len([f for f in _findings(one, date.today()) if f[0] == "title_length"])

    with pytest.raises(ConfigurationError, match=r"^unknown SiteConfig block 'no-such-site'") as error:
        audit_site(AuditParams(site_block="no-such-site"))
    assert "\n" not in str(error.value)
    with pytest.raises(ValidationError, match="exactly one of crawl"):
        AuditParams(site_block=name, crawl=CrawlConfig(start_urls=[demo.site.base_url + "/"]))
    with pytest.raises(ValidationError, match="exactly one of crawl"):
        AuditParams()
    with pytest.raises(ValidationError, match="thresholds come from the SiteConfig block"):
        AuditParams(site_block=name, thresholds=AuditThresholds())


_SERVE = """
import sys
from flows.audit_shard import audit_shard

audit_shard.serve(name=sys.argv[1], limit=4, pause_on_shutdown=False, print_starting_message=False)
"""


@pytest.mark.slow
@pytest.mark.prefect
@pytest.mark.redis
@pytest.mark.usefixtures("prefect_api")
def test_audit_flow_runs_its_shards_as_deployment_runs(
    demo: Demo, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """The shards of a round become runs of the ``audit_shard`` deployment, picked up by another process
    (here ``flow.serve``; a worker of the pool in production), and their persisted results come back."""
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
    from prefect.settings import PREFECT_API_URL

    from flows.audit_site import AuditParams, audit_site
    from tests.e2e.conftest import stop_process

    name = f"audit-shard-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        served = subprocess.Popen(
            [sys.executable, "-c", _SERVE, name],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def deployment_id() -> object:
        async with get_client() as client:
            for _ in range(240):
                if served.poll() is not None:
                    pytest.fail(f"serve exited {served.returncode}: {log.read_text()[-3000:]}")
                try:
                    return (await client.read_deployment_by_name(f"audit_shard/{name}")).id
                except Exception:
                    await asyncio.sleep(0.25)
        pytest.fail("the audit_shard deployment did not appear")

    async def shard_runs(deployment: object) -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment])),
                flow_run_filter=FlowRunFilter(),
            )
        return [run.state.type.value if run.state else "?" for run in runs]

    try:
        deployment = asyncio.run(deployment_id())
        pages = [demo.site.base_url + path for path in ("/", "/about/", "/blog/", "/contact/", "/careers/")]
        crawl = CrawlConfig(start_urls=pages, list_mode=True, allow_private=True)
        summary = audit_site(
            AuditParams(
                crawl=crawl,
                shards=2,
                shard_deployment=f"audit_shard/{name}",
                host_limit=_spec(redis_url, namespace),
            )
        )
        states = asyncio.run(shard_runs(deployment))
    finally:
        stop_process(served)  # type: ignore[arg-type]
    single = audit_site(AuditParams(crawl=crawl))
    assert states == ["COMPLETED", "COMPLETED"]  # list mode: one round, one run per shard
    assert summary.pages == single.pages == 5
    assert sorted((f.code, f.url) for f in summary.findings) == sorted(
        (f.code, f.url) for f in single.findings
    )
