"""Bounded content decoding: a compressed body is inflated only as far as the byte cap allows.

httpx inflates a whole network read at once (``aiter_bytes``), so a 405-byte brotli body can become
256 MiB in memory before any cap is checked. The fetcher reads the raw stream instead and inflates it
here with an output limit, so memory stays within ``max_bytes`` plus one read, however hostile the
server. The crawler only advertises what it can bound (:data:`ACCEPT_ENCODING`).
"""

from __future__ import annotations

import zlib

#: What the crawler asks servers for: encodings inflated here with a bounded output.
ACCEPT_ENCODING = "gzip, deflate"


class UnsupportedEncoding(ValueError):
    """The server used a content coding the crawler did not ask for and cannot bound."""


class BoundedInflater:
    """Inflate a ``Content-Encoding`` stream chunk by chunk, never producing more than asked for.

    Args:
        encoding: The response's ``Content-Encoding`` header (``None`` or ``identity``: as is).

    Raises:
        UnsupportedEncoding: ``br``, ``zstd``, a chain of codings, or anything unknown.
    """

    def __init__(self, encoding: str | None) -> None:
        coding = (encoding or "").strip().lower()
        self._raw_deflate_tried = False
        if coding in ("", "identity"):
            self._inflater: zlib._Decompress | None = None
        elif coding in ("gzip", "x-gzip"):
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif coding == "deflate":
            # "deflate" is zlib-wrapped by the RFC; some servers send raw deflate (tried on failure).
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS)
        else:
            raise UnsupportedEncoding(f"unsupported Content-Encoding {encoding!r}")
        self._coding = coding
        self._pending = b""

    def feed(self, data: bytes, limit: int) -> bytes:
        """Inflate ``data`` (plus what an earlier call left over), returning at most ``limit`` bytes.

        Raises:
            zlib.error: the stream is corrupt.
        """
        if self._inflater is None:
            return data[:limit] if limit >= 0 else b""
        if limit <= 0:
            return b""
        source = self._pending + data
        try:
            out = self._inflater.decompress(source, limit)
        except zlib.error:
            if self._coding != "deflate" or self._raw_deflate_tried:
                raise
            self._raw_deflate_tried = True
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._inflater.decompress(source, limit)
        self._pending = self._inflater.unconsumed_tail
        return out

    @property
    def has_more(self) -> bool:
        """Compressed input is waiting that the last limit cut off (the body is larger than asked)."""
        return bool(self._pending)
