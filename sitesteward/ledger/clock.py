"""An injectable clock, so lease and approval expiry can be tested in milliseconds.

In one process a test passes a :class:`ManualClock` to the ledger. Worker subprocesses open the ledger
themselves (``Ledger.open()``), so for them a test sets ``SITESTEWARD_CLOCK_FILE`` (tests only, like
``SITESTEWARD_FAULT_POINTS``) and moves time by rewriting that file: see :class:`FileClock`.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from sitesteward.errors import ConfigurationError
from sitesteward.settings import get_settings


class Clock(Protocol):
    """Anything that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime:
        """Return the current time (timezone-aware, UTC)."""
        ...


class SystemClock:
    """The real clock (UTC)."""

    def now(self) -> datetime:
        """Return ``datetime.now(UTC)``."""
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, simulations).

    Args:
        start: The initial time; naive values are taken as UTC. Default: 2026-01-01T00:00Z.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._now = _as_utc(start or datetime(2026, 1, 1, tzinfo=UTC))

    def now(self) -> datetime:
        """Return the current (frozen) time."""
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta`` and return the new time."""
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when``."""
        with self._lock:
            self._now = _as_utc(when)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class FileClock:
    """Tests only: a clock that several processes share through a file, so a test can move their time.

    Selected by ``SITESTEWARD_CLOCK_FILE`` (see :func:`default_clock`); nothing else sets it. The file is
    read on every :meth:`now`, so a change made by the test is seen by worker subprocesses at once. It
    holds either:

    * an offset in seconds from the system clock (``86400``, ``+86400.5``, ``-60``): time keeps moving, so
      leases measured in seconds still expire while the test jumps days ahead; or
    * an ISO 8601 timestamp (``2026-01-02T00:00:00+00:00``; naive = UTC): time stands still there.

    A missing or empty file means "no offset" (the system time), so a test may create it later.

    Args:
        path: The file to read.

    Raises:
        ConfigurationError: (from :meth:`now`) the file holds neither a number nor an ISO timestamp.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> datetime:
        """Return the system time shifted by the file's offset, or the file's fixed timestamp."""
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            text = ""
        real = datetime.now(UTC)
        if not text:
            return real
        try:
            return real + timedelta(seconds=float(text))
        except (ValueError, OverflowError):
            pass
        try:
            return _as_utc(datetime.fromisoformat(text))
        except ValueError as exc:
            raise ConfigurationError(
                f"clock file {self.path} holds {text[:40]!r}: expected an offset in seconds or an ISO time"
            ) from exc

    @staticmethod
    def write_offset(path: Path, offset: timedelta) -> None:
        """Make every process reading ``path`` run ``offset`` ahead of the system clock (atomically)."""
        _write_atomically(path, repr(offset.total_seconds()))

    @staticmethod
    def write_time(path: Path, when: datetime) -> None:
        """Freeze every process reading ``path`` at ``when`` (atomically)."""
        _write_atomically(path, _as_utc(when).isoformat())


def default_clock() -> Clock:
    """The clock :meth:`Ledger.open` uses: a :class:`FileClock` when ``SITESTEWARD_CLOCK_FILE`` is set
    (tests that move time for worker subprocesses), else the :class:`SystemClock`."""
    path = get_settings().clock_file
    return SystemClock() if path is None else FileClock(path)


def _write_atomically(path: Path, text: str) -> None:
    # A reader in another process must see the old or the new value, never an empty, half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text + "\n", encoding="utf-8")
    temporary.replace(path)
