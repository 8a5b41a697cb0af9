"""The crawl store alone: batches, skipped error pages, validators, hashes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sitesteward.crawl.store import CrawlStore, Validators
from sitesteward.models import FetchError, Link, Page, PageData


def _page(i: int, *, error: FetchError | None = None, etag: str | None = None) -> Page:
    data = (
        None
        if error
        else PageData(
            title=f"t{i}",
            text_hash=f"h{i}",
            main_text=f"text {i}",
            links=[Link(href=f"https://e.test/{i + 1}")],
        )
    )
    headers = {"etag": etag} if etag else {}
    return Page(
        url=f"https://e.test/{i}",
        final_url=f"https://e.test/{i}",
        status=200 if not error else None,
        fetched_at=datetime.now(UTC),
        error=error,
        data=data,
        headers=headers,
    )


def test_save_in_batches_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "crawl.sqlite"
    with CrawlStore(path) as store:
        pages = (_page(i, etag=f'"e{i}"') for i in range(1234))
        assert store.save_pages("e.test", pages, batch_size=100) == 1234
        assert store.save_pages("e.test", [_page(5000, error=FetchError.timeout)]) == 0
    with CrawlStore(path) as store:
        hashes = store.previous_hashes("e.test")
        assert len(hashes) == 1234 and hashes["https://e.test/7"] == "h7"
        assert store.previous_hashes("other.test") == {}
        assert store.validators("e.test", "https://e.test/7") == Validators(etag='"e7"', last_modified=None)
        assert store.validators("e.test", "https://e.test/missing") is None
        page = store.load_page("e.test", "https://e.test/3")
        assert page is not None and page.data is not None and page.data.main_text == "text 3"
        assert page.data.links[0].href == "https://e.test/4"
        assert sum(1 for _ in store.iter_pages("e.test")) == 1234
        journal = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert journal == "wal"


def test_a_failed_refetch_keeps_the_good_snapshot(tmp_path: Path) -> None:
    with CrawlStore(tmp_path / "s.sqlite") as store:
        store.save_pages("e.test", [_page(1, etag='"x"')])
        store.save_pages("e.test", [_page(1, error=FetchError.timeout)])
        assert store.validators("e.test", "https://e.test/1") == Validators(etag='"x"', last_modified=None)
    assert Validators('"x"', "Wed, 21 Oct 2015 07:28:00 GMT").headers() == {
        "If-None-Match": '"x"',
        "If-Modified-Since": "Wed, 21 Oct 2015 07:28:00 GMT",
    }


def test_site_validators_reads_every_page_with_one(tmp_path: Path) -> None:
    with CrawlStore(tmp_path / "s.sqlite") as store:
        store.save_pages("e.test", [_page(1, etag='"a"'), _page(2), _page(3, etag='"c"')])
        store.save_pages("other.test", [_page(4, etag='"d"')])
        assert store.site_validators("e.test") == {
            "https://e.test/1": Validators(etag='"a"', last_modified=None),
            "https://e.test/3": Validators(etag='"c"', last_modified=None),
        }
        assert store.site_validators("nobody.test") == {}


def test_a_304_page_moves_its_validators_and_keeps_the_snapshot(tmp_path: Path) -> None:
    with CrawlStore(tmp_path / "s.sqlite") as store:
        first = _page(1, etag='"old"')
        store.save_pages("e.test", [first])
        (blob_before,) = store._conn.execute("SELECT page FROM pages").fetchone()
        later = datetime(2030, 1, 2, tzinfo=UTC)
        answered = first.model_copy(
            update={"not_modified": True, "headers": {"etag": '"new"'}, "fetched_at": later}
        )
        assert store.save_pages("e.test", [answered]) == 1
        etag, fetched_at, blob_after = store._conn.execute(
            "SELECT etag, fetched_at, page FROM pages"
        ).fetchone()
        assert etag == '"new"' and fetched_at == later.isoformat()
        assert blob_after == blob_before  # the snapshot is not re-encoded for an unchanged page
        assert store.validators("e.test", first.url) == Validators(etag='"new"', last_modified=None)
        loaded = store.load_page("e.test", first.url)
        assert loaded is not None and loaded.data == first.data
