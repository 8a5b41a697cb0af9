"""HTML extraction in a worker process, so that a crawl uses a second core.

Decoding, parsing and extracting a real page costs 3-10 ms of CPU and holds the GIL: a crawl in one
process is CPU-bound long before the network or the server is busy (the event loop cannot read the
next response while it parses). :func:`build_page_async` sends large bodies to worker processes and
extracts the rest in the calling thread, as before:

- the workers are started with the first large page and serve every crawl of the process; :func:`warm_up`
  starts them at once (a caller that knows large pages will come can overlap their start with its own);
- a body below :data:`MIN_POOL_BYTES` is cheaper to extract than to ship to another process;
- a worker's queue holds at most :data:`MAX_QUEUED_BYTES` of HTML: a page that arrives while every
  queue is full is extracted in this thread, so both cores stay busy and neither waits for the other
  (counting bytes, not pages, keeps one 2 MB page from idling the worker while this thread parses it);
- a worker that dies (out of memory, a crash in a C library) never loses a page: its pages are
  extracted again here, and a new worker is started for the next ones.

A worker is ``python -c "...serve()"`` (:mod:`sitesteward.crawl.worker`) talking length-prefixed
pickles over its stdin and stdout, not ``multiprocessing``: every start method but ``fork`` re-imports
the parent's ``__main__`` in the child (a user's script that audits at import time would crawl again in
every worker), and ``fork`` is unsafe beside the threads Prefect runs. It receives the body and answers
with the extracted data; the Page is built here. It ignores Ctrl-C (the parent decides) and exits when
its stdin closes, which is also what happens when the parent is killed.

The number of workers is ``Settings.extract_processes`` (default: one when the machine has two or more
cores, none on one core; 0 extracts everything in the calling thread).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

from sitesteward.crawl.fetch import Exchange
from sitesteward.crawl.page import build_page, wants_extraction
from sitesteward.crawl.worker import extract_data, read_frame, write_frame
from sitesteward.models import Page, PageData
from sitesteward.settings import get_settings

logger = logging.getLogger(__name__)

#: Bodies smaller than this are extracted in the calling thread (pickling both ways and a pipe round
#: trip cost about as much as extracting a few kilobytes of HTML).
MIN_POOL_BYTES = 16 * 1024
#: HTML bytes queued per worker (sent, not answered) past which the caller extracts the next page itself:
#: about 40 ms of a worker's work. Measured on the docs site: 512 KiB left the crawler's thread the busier
#: one, 1 MiB the worker; 768 KiB splits the CPU about evenly.
MAX_QUEUED_BYTES = 768 * 1024
#: Workers that died are replaced this many times per process; then extraction stays here.
MAX_RESTARTS = 3

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_WORKER_CODE = "from sitesteward.crawl.worker import serve; serve()"


class WorkerDied(RuntimeError):
    """An extraction worker exited before it answered (the page is extracted in this process)."""


def pool_size() -> int:
    """Worker processes to use: ``Settings.extract_processes``, else one when there are two cores."""
    configured = get_settings().extract_processes
    if configured is not None:
        return configured
    return 1 if (os.cpu_count() or 1) >= 2 else 0


class _Worker:
    """One worker process, with a writer thread (a full pipe must not block the event loop) and a reader.

    It answers in order, so the futures wait in a FIFO.
    """

    def __init__(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")])),
        }
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", _WORKER_CODE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self.alive = True
        self.load = 0  # bytes of the requests sent and not answered yet
        self._lock = threading.Lock()
        self._pending: collections.deque[Future[Any]] = collections.deque()
        self._outbox: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self._write_loop, name="extraction-writer", daemon=True).start()
        threading.Thread(target=self._read_loop, name="extraction-reader", daemon=True).start()

    def submit(self, cost: int, function: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """Run ``function(*args)`` in the worker; ``cost`` (bytes) counts in :attr:`load` until answered."""
        future: Future[Any] = Future()
        with self._lock:  # nothing is queued after the reader's final sentinel
            if self.alive:
                self.load += cost
                future.add_done_callback(partial(self._done, cost))
                self._outbox.put((future, function, args))
                return future
        future.set_exception(WorkerDied("the extraction worker has exited"))
        return future

    def _done(self, cost: int, _: Future[Any]) -> None:
        with self._lock:
            self.load -= cost

    def _write_loop(self) -> None:
        # Runs until the sentinel (from stop() or from the reader once the worker is gone), failing
        # what it cannot send, so that no future is ever left waiting.
        stream = self.process.stdin
        assert stream is not None
        broken = False
        while (item := self._outbox.get()) is not None:
            future, function, args = item
            if not future.set_running_or_notify_cancel():  # the caller gave up on it (a cancelled crawl)
                continue
            try:
                payload = pickle.dumps((function, args, {}), pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                future.set_exception(exc)
                continue
            with self._lock:
                sendable = not broken and self.alive
                if sendable:
                    self._pending.append(future)
            if not sendable:  # outside the lock: the future's callback takes it
                future.set_exception(WorkerDied("the extraction worker has exited"))
                continue
            try:
                write_frame(stream, payload)
            except OSError:  # the worker is gone: the reader fails what is pending
                broken = True
        with contextlib.suppress(OSError):
            stream.close()

    def _read_loop(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while (frame := read_frame(stream)) is not None:
            with self._lock:
                future = self._pending.popleft()
            try:
                ok, value = pickle.loads(frame)  # noqa: S301 - our own worker's answer
            except Exception as exc:
                future.set_exception(exc)
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        with contextlib.suppress(OSError):
            stream.close()
        code = self.process.wait()
        with self._lock:
            self.alive = False
            pending, self._pending = self._pending, collections.deque()
            self._outbox.put(None)
        for future in pending:
            future.set_exception(WorkerDied(f"the extraction worker exited with code {code}"))

    def stop(self) -> None:
        self._outbox.put(None)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _Pool:
    """The process's extraction workers: started on first use, replaced when one dies (a few times)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: list[_Worker] | None = None
        self._restarts = 0
        self._exit_hook = False
        self.pages_in_workers = 0
        self.pages_here = 0

    def workers(self) -> list[_Worker]:
        """The running workers (empty when extraction stays in this process)."""
        with self._lock:
            if self._workers is None:
                self._workers = [_Worker() for _ in range(pool_size())]
                if not self._exit_hook:
                    atexit.register(self.shutdown)
                    self._exit_hook = True
            for index, worker in enumerate(self._workers):
                if not worker.alive:
                    self._restarts += 1
                    if self._restarts > MAX_RESTARTS:
                        # Workers that cannot even start (say, the package is not importable by
                        # sys.executable) would otherwise be restarted for every page.
                        logger.warning("extraction workers keep exiting: extracting in this process")
                        self._workers = []
                        break
                    self._workers[index] = _Worker()
            return self._workers

    def acquire(self) -> _Worker | None:
        """The least busy worker whose queue has room, or None (the caller extracts the page itself)."""
        workers = self.workers()
        with self._lock:
            idle = min(workers, key=lambda worker: worker.load, default=None)
            if idle is None or idle.load >= MAX_QUEUED_BYTES:
                self.pages_here += 1
                return None
            self.pages_in_workers += 1
            return idle

    def shutdown(self) -> None:
        """Stop the workers (a later crawl starts new ones)."""
        with self._lock:
            workers, self._workers = self._workers or [], None
            self._restarts = 0
        for worker in workers:
            worker.stop()


_POOL = _Pool()


def warm_up() -> None:
    """Start the worker processes now, so that their imports overlap the caller's."""
    _POOL.workers()


def shutdown() -> None:
    """Stop the worker processes (a later crawl starts them again)."""
    _POOL.shutdown()


def counts() -> dict[str, int]:
    """Pages extracted by workers and in this process since start (large bodies only)."""
    return {"in_workers": _POOL.pages_in_workers, "here": _POOL.pages_here}


async def build_page_async(
    exchange: Exchange,
    *,
    url: str,
    depth: int = 0,
    in_sitemap: bool = False,
    site_hosts: frozenset[str] = frozenset(),
    parse: bool = True,
) -> Page:
    """:func:`sitesteward.crawl.page.build_page` (same arguments), extracting in a worker when that pays.

    Returns:
        The same Page ``build_page`` returns; a worker's failure is never the page's.
    """
    build = partial(
        build_page, exchange, url=url, depth=depth, in_sitemap=in_sitemap, site_hosts=site_hosts, parse=parse
    )
    if not wants_extraction(exchange, parse=parse) or len(exchange.body) < MIN_POOL_BYTES:
        return build()
    worker = _POOL.acquire()
    if worker is None:
        return build()
    try:
        body = exchange.body
        job = worker.submit(
            len(body), extract_data, body, exchange.content_type, exchange.final_url, site_hosts
        )
        extracted: tuple[PageData | None, str, str | None] = await asyncio.wrap_future(job)
    except Exception as exc:
        logger.warning("extraction worker failed (%s); extracting %s in this process", exc, url)
        return build()
    return build(extracted=extracted)
