"""The crawl store: the last snapshot of every page, for conditional re-crawls and page diffs.

SQLite in WAL mode (stdlib ``sqlite3``). One row per ``(site, url)``: the validators (ETag,
Last-Modified), the text hash, the status and the whole last :class:`~sitesteward.models.Page` as
zlib-compressed JSON (main text included, so ``CrawlResult`` can leave it out). Writes go in batches,
one transaction each, so a crawl of any size is saved with bounded memory.
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from sitesteward.models import LinkCheck, LinkOutcome, Page
from sitesteward.settings import get_settings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pages (
    site TEXT NOT NULL,
    url TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    text_hash TEXT,
    status INTEGER,
    fetched_at TEXT NOT NULL,
    page BLOB NOT NULL,
    PRIMARY KEY (site, url)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS link_checks (
    url TEXT PRIMARY KEY,
    checked_at TEXT NOT NULL,
    result TEXT NOT NULL
) WITHOUT ROWID;
"""
_UPSERT = """
INSERT INTO pages (site, url, etag, last_modified, text_hash, status, fetched_at, page)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (site, url) DO UPDATE SET
    etag = excluded.etag, last_modified = excluded.last_modified, text_hash = excluded.text_hash,
    status = excluded.status, fetched_at = excluded.fetched_at, page = excluded.page
"""
#: A page answered 304 from its snapshot: the stored page is the same, only its validators and fetch time
#: move (re-encoding and rewriting the whole snapshot was most of a re-crawl's store work).
_TOUCH = "UPDATE pages SET etag = ?, last_modified = ?, fetched_at = ? WHERE site = ? AND url = ?"
DEFAULT_BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class Validators:
    """What a conditional request needs: the last ETag and Last-Modified of a URL."""

    etag: str | None
    last_modified: str | None

    def headers(self) -> dict[str, str]:
        """``If-None-Match`` / ``If-Modified-Since`` headers (empty when nothing is known)."""
        headers: dict[str, str] = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


def _encode(page: Page) -> bytes:
    # Level 1: a third of level 6's CPU for a blob about 15% larger (the crawl writes every page).
    return zlib.compress(page.model_dump_json().encode("utf-8"), 1)


def _decode(blob: bytes) -> Page:
    return Page.model_validate_json(zlib.decompress(blob))


class CrawlStore:
    """Per-URL snapshots of crawled pages in SQLite.

    Only snapshots of usable pages (HTML parsed, no error, or a 304 answered from a snapshot) are
    worth keeping; :meth:`save_pages` skips the rest so a transient failure never wipes a good
    snapshot.

    Args:
        path: The SQLite file (default ``Settings.crawl_store_path``); ``":memory:"`` for tests.
    """

    def __init__(self, path: Path | str | None = None) -> None:
        target = path if path is not None else get_settings().crawl_store_path
        if str(target) != ":memory:":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        self.path = target
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(target), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> CrawlStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def validators(self, site: str, url: str) -> Validators | None:
        """The last validators of ``url``, or None when it was never stored or has none."""
        with self._lock:
            row = self._conn.execute(
                "SELECT etag, last_modified FROM pages WHERE site = ? AND url = ?", (site, url)
            ).fetchone()
        if row is None or (row[0] is None and row[1] is None):
            return None
        return Validators(etag=row[0], last_modified=row[1])

    def site_validators(self, site: str) -> dict[str, Validators]:
        """``{url: validators}`` of every stored page of ``site`` that has any, in one query.

        A crawl reads them once before its first request instead of asking per URL from its event
        loop (each call there waited for the connection and the GIL while a batch was being saved).
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT url, etag, last_modified FROM pages WHERE site = ? "
                "AND (etag IS NOT NULL OR last_modified IS NOT NULL)",
                (site,),
            ).fetchall()
        return {str(url): Validators(etag=etag, last_modified=modified) for url, etag, modified in rows}

    def load_page(self, site: str, url: str) -> Page | None:
        """The last stored Page of ``url`` (with its main text), or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT page FROM pages WHERE site = ? AND url = ?", (site, url)
            ).fetchone()
        return _decode(row[0]) if row is not None else None

    def previous_hashes(self, site: str) -> dict[str, str]:
        """``{url: text_hash}`` of every stored page of ``site`` (for the page diff)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT url, text_hash FROM pages WHERE site = ? AND text_hash IS NOT NULL", (site,)
            ).fetchall()
        return {str(url): str(text_hash) for url, text_hash in rows}

    def iter_pages(self, site: str) -> Iterator[Page]:
        """Every stored Page of ``site``, streamed in URL order."""
        last = ""
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT url, page FROM pages WHERE site = ? AND url > ? ORDER BY url LIMIT 500",
                    (site, last),
                ).fetchall()
            if not rows:
                return
            for url, blob in rows:
                last = url
                yield _decode(blob)

    def recent_link_check(self, url: str, max_age: timedelta) -> LinkCheck | None:
        """The last check of an external ``url`` if it is younger than ``max_age``, else None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT checked_at, result FROM link_checks WHERE url = ?", (url,)
            ).fetchone()
        if row is None or datetime.fromisoformat(row[0]) < datetime.now(UTC) - max_age:
            return None
        return LinkCheck.model_validate_json(row[1])

    def save_link_checks(self, checks: Iterable[LinkCheck]) -> None:
        """Remember external link checks (transient errors are not worth remembering)."""
        now = datetime.now(UTC).isoformat()
        rows = [(c.url, now, c.model_dump_json()) for c in checks if c.outcome is not LinkOutcome.error]
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT INTO link_checks (url, checked_at, result) VALUES (?, ?, ?) "
                "ON CONFLICT (url) DO UPDATE SET checked_at = excluded.checked_at, result = excluded.result",
                rows,
            )
            self._conn.execute("COMMIT")

    def save_pages(self, site: str, pages: Iterable[Page], *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        """Save pages, ``batch_size`` per transaction; pages with an error or no data are skipped.

        A page answered 304 from its snapshot (``not_modified``) updates only its row's validators and
        fetch time: the stored snapshot is that page already.

        Args:
            site: The site key (``CrawlResult.site``).
            pages: Any iterable (a generator keeps memory bounded).
            batch_size: Rows per transaction.

        Returns:
            How many pages were written.
        """
        written = 0
        batch: list[tuple[object, ...]] = []
        touched: list[tuple[object, ...]] = []
        for page in pages:
            if page.error is not None or page.data is None:
                continue
            if page.not_modified:
                headers = page.headers
                touched.append(
                    (
                        headers.get("etag"),
                        headers.get("last-modified"),
                        page.fetched_at.isoformat(),
                        site,
                        page.url,
                    )
                )
            else:
                batch.append(self._row(site, page))
            if len(batch) + len(touched) >= batch_size:
                written += self._write(batch, touched)
                batch, touched = [], []
        if batch or touched:
            written += self._write(batch, touched)
        return written

    @staticmethod
    def _row(site: str, page: Page) -> tuple[object, ...]:
        headers = page.headers
        return (
            site,
            page.url,
            headers.get("etag"),
            headers.get("last-modified"),
            page.data.text_hash if page.data is not None else None,
            page.status,
            page.fetched_at.isoformat(),
            _encode(page),
        )

    def _write(self, rows: Sequence[tuple[object, ...]], touched: Sequence[tuple[object, ...]] = ()) -> int:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if rows:
                    self._conn.executemany(_UPSERT, rows)
                if touched:
                    self._conn.executemany(_TOUCH, touched)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return len(rows) + len(touched)
