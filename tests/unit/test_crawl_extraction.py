"""Extraction in a worker process: same pages as in-process, no page lost when a worker dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitesteward.crawl import extraction
from sitesteward.crawl.fetch import Exchange
from sitesteward.crawl.page import build_page
from sitesteward.settings import get_settings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pages"
LARGE = (FIXTURES / "docs_large.html").read_bytes()
SMALL = (FIXTURES / "docs_page.html").read_bytes()
URL = "https://docs.example.org/library/large.html"


def _exchange(body: bytes, url: str = URL) -> Exchange:
    return Exchange(
        url=url, final_url=url, status=200, headers={"content-type": "text/html; charset=utf-8"}, body=body
    )


#: One exchange each (an Exchange stamps its fetch time when made; pages compare it).
LARGE_EXCHANGE = _exchange(LARGE)
SMALL_EXCHANGE = _exchange(SMALL)


@pytest.fixture
def one_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SITESTEWARD_EXTRACT_PROCESSES", "1")
    get_settings.cache_clear()
    extraction.shutdown()
    yield
    extraction.shutdown()


def _build(exchange: Exchange) -> object:
    return asyncio.run(extraction.build_page_async(exchange, url=exchange.url, site_hosts=frozenset()))


def test_fixture_sizes_straddle_the_threshold() -> None:
    assert len(LARGE) >= extraction.MIN_POOL_BYTES > len(SMALL)


def test_a_large_page_from_a_worker_equals_the_in_process_page(one_worker: None) -> None:
    before = extraction.counts()["in_workers"]
    page = _build(LARGE_EXCHANGE)
    assert extraction.counts()["in_workers"] == before + 1
    assert page == build_page(LARGE_EXCHANGE, url=URL)
    assert page.data is not None and page.data.word_count > 500  # type: ignore[attr-defined]


def test_a_small_page_starts_no_worker(one_worker: None) -> None:
    before = extraction.counts()
    page = _build(SMALL_EXCHANGE)
    assert page == build_page(SMALL_EXCHANGE, url=URL)
    assert extraction.counts() == before
    assert extraction._POOL._workers is None


def test_no_worker_when_configured_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITESTEWARD_EXTRACT_PROCESSES", "0")
    get_settings.cache_clear()
    extraction.shutdown()
    before = extraction.counts()
    page = _build(LARGE_EXCHANGE)
    assert page == build_page(LARGE_EXCHANGE, url=URL)
    assert extraction.counts()["in_workers"] == before["in_workers"]
    assert extraction.counts()["here"] == before["here"] + 1


def test_a_page_sent_to_a_killed_worker_is_extracted_here(one_worker: None) -> None:
    extraction.warm_up()
    (worker,) = extraction._POOL.workers()
    os.kill(worker.process.pid, signal.SIGKILL)
    worker.process.wait(timeout=10)
    page = _build(LARGE_EXCHANGE)  # sent to the dead worker, or to its replacement
    assert page == build_page(LARGE_EXCHANGE, url=URL)
    # A new worker serves the next page.
    deadline = time.monotonic() + 10
    while worker.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    (replacement,) = extraction._POOL.workers()
    assert replacement is not worker and replacement.alive
    before = extraction.counts()["in_workers"]
    assert _build(LARGE_EXCHANGE) == page
    assert extraction.counts()["in_workers"] == before + 1


def test_a_worker_dying_mid_page_fails_the_future_not_the_pool(one_worker: None) -> None:
    extraction.warm_up()
    (worker,) = extraction._POOL.workers()
    future = worker.submit(1, os._exit, 3)
    with pytest.raises(extraction.WorkerDied, match="code 3"):
        future.result(timeout=30)
    assert not worker.alive
    assert _build(LARGE_EXCHANGE) == build_page(LARGE_EXCHANGE, url=URL)


def test_a_saturated_worker_leaves_the_next_page_to_the_caller(one_worker: None) -> None:
    extraction.warm_up()
    (worker,) = extraction._POOL.workers()
    slow = [worker.submit(extraction.MAX_QUEUED_BYTES // 2, time.sleep, 0.5) for _ in range(2)]
    assert extraction._POOL.acquire() is None
    for future in slow:
        future.result(timeout=30)
    assert extraction._POOL.acquire() is worker


def test_a_cancelled_page_does_not_stall_the_worker(one_worker: None) -> None:
    async def cancel_one_then_build() -> object:
        task = asyncio.create_task(extraction.build_page_async(LARGE_EXCHANGE, url=URL))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await extraction.build_page_async(LARGE_EXCHANGE, url=URL)

    assert asyncio.run(cancel_one_then_build()) == build_page(LARGE_EXCHANGE, url=URL)


def test_an_exception_in_the_worker_comes_back_as_that_exception(one_worker: None) -> None:
    extraction.warm_up()
    (worker,) = extraction._POOL.workers()
    with pytest.raises(ValueError, match="invalid literal"):
        worker.submit(1, int, "not a number").result(timeout=30)
    assert worker.alive


def test_the_worker_never_runs_the_parents_main_module(tmp_path: Path) -> None:
    # A script without a main guard: multiprocessing's spawn would run it again in every worker.
    marker = tmp_path / "runs.txt"
    script = tmp_path / "audit_at_import.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio
            from pathlib import Path
            from sitesteward.crawl import extraction
            from sitesteward.crawl.fetch import Exchange

            with open({str(marker)!r}, "a") as runs:
                runs.write("ran\\n")
            body = Path({str(FIXTURES / "docs_large.html")!r}).read_bytes()
            exchange = Exchange(url={URL!r}, final_url={URL!r}, status=200,
                                headers={{"content-type": "text/html"}}, body=body)
            page = asyncio.run(extraction.build_page_async(exchange, url={URL!r}))
            print(extraction.counts()["in_workers"], page.data.word_count)
            """
        )
    )
    env = {**os.environ, "SITESTEWARD_EXTRACT_PROCESSES": "1"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    in_workers, words = done.stdout.split()
    assert in_workers == "1" and int(words) > 500
    assert marker.read_text() == "ran\n"
