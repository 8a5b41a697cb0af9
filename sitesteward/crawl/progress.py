"""Crawl progress reports, for logs, the CLI's progress bar and Prefect artifacts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CrawlProgress:
    """A snapshot of a running crawl.

    Attributes:
        fetched: Pages fetched so far (errors included).
        queued: URLs waiting in the frontier.
        errors: Fetched pages with an error.
        current_url: The page just fetched.
    """

    fetched: int
    queued: int
    errors: int
    current_url: str | None = None
