"""Crawl progress fan-out: Prefect progress artifact + in-process listeners (the CLI's progress bar).

A flow run started by the CLI runs in the CLI's own process, so a listener registered here sees every
progress event of the crawl task without going through the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

Listener = Callable[[Any], None]
_LISTENERS: list[Listener] = []


def add_listener(listener: Listener) -> None:
    _LISTENERS.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _LISTENERS:
        _LISTENERS.remove(listener)


class ProgressReporter:
    """Throttled progress: listeners on every event, the Prefect artifact at most once a second."""

    def __init__(self, key: str, *, min_interval: float = 1.0) -> None:
        self._artifact_id: UUID | None = None
        self._key = key
        self._min_interval = min_interval
        self._last = 0.0

    def __call__(self, progress: Any) -> None:
        for listener in list(_LISTENERS):
            listener(progress)
        now = time.monotonic()
        if now - self._last < self._min_interval:
            return
        self._last = now
        self.publish(progress)

    def publish(self, progress: Any) -> None:
        fetched, queued = int(progress.fetched), int(progress.queued)
        percent = 100.0 * fetched / max(1, fetched + queued)
        description = f"{fetched} fetched, {queued} queued, {progress.errors} errors"
        if self._artifact_id is None:
            artifact = create_progress_artifact(progress=percent, key=self._key, description=description)
            self._artifact_id = artifact if isinstance(artifact, UUID) else getattr(artifact, "id", None)
        else:
            update_progress_artifact(self._artifact_id, progress=percent, description=description)
