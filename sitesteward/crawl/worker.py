"""Decoding and extraction of one HTML body, and the extraction worker process that runs it.

This module is what a worker imports (``python -c "...worker import serve; serve()"``), so it imports
only decoding, extraction and the data models: no HTTP client, no crawler, no Prefect (a worker starts
in about 0.3 s and holds about 35 MiB before its first page). The parent side is
:mod:`sitesteward.crawl.extraction`.

The protocol is one length-prefixed pickle per message over the worker's stdin and stdout, answered in
order: ``(function, args, kwargs)`` in, ``(ok, value)`` out, ``value`` being the result or the exception.
Pickles only ever travel between a parent and the worker it started.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import pickle
import signal
import struct
import sys
from collections.abc import Callable
from typing import IO, Any

from sitesteward import extract
from sitesteward.crawl.decode import decode_html
from sitesteward.models import PageData

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!Q")
#: After a body this large the worker hands freed memory back to the system (glibc keeps it otherwise:
#: one 2.5 MB page leaves the worker 40 MiB larger for the rest of the crawl).
_TRIM_AFTER_BYTES = 512 * 1024


def extract_data(
    body: bytes, content_type: str | None, url: str, site_hosts: frozenset[str]
) -> tuple[PageData | None, str, str | None]:
    """Decode and extract one HTML body.

    Returns:
        ``(data, encoding, problem)``: ``data`` is None (and ``problem`` says why) when extraction
        failed; a failure is logged, never raised.
    """
    text, encoding = decode_html(body, content_type)
    try:
        return extract.extract_page(text, url, site_hosts=site_hosts), encoding, None
    except Exception as exc:  # extraction bugs must not end a crawl
        logger.warning("extraction failed for %s: %r", url, exc)
        return None, encoding, f"extraction failed: {type(exc).__name__}: {exc}"


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The next message, or None at the end of the stream (or a message cut short)."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    """Send one message."""
    stream.write(_HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _memory_trimmer() -> Callable[[], object]:
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is None:  # not glibc: nothing to do
        return lambda: None
    return lambda: trim(0)


def serve() -> None:
    """The worker's loop: answer each request in order until stdin ends (the parent closed it or died)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the answers
    trim = _memory_trimmer()
    while (frame := read_frame(requests)) is not None:
        function, args, kwargs = pickle.loads(frame)  # noqa: S301 - from the parent that started us
        try:
            answer: tuple[bool, Any] = (True, function(*args, **kwargs))
        except Exception as exc:
            answer = (False, exc)
        try:
            payload = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an unpicklable result or exception
            payload = pickle.dumps((False, RuntimeError(f"unpicklable answer: {exc!r}")))
        write_frame(answers, payload)
        if len(frame) > _TRIM_AFTER_BYTES:
            trim()
