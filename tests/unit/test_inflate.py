"""Bounded content decoding: never more output than asked for, whatever the compression ratio."""

from __future__ import annotations

import gzip
import zlib

import pytest

from sitesteward.crawl.inflate import BoundedInflater, UnsupportedEncoding

TEXT = b"<html><body>" + b"hello world " * 5000 + b"</body></html>"


def _drain(inflater: BoundedInflater, chunks: list[bytes], cap: int) -> bytes:
    out = b""
    for chunk in chunks:
        out += inflater.feed(chunk, cap - len(out))
    return out


@pytest.mark.parametrize(
    ("encoding", "payload"),
    [
        ("gzip", gzip.compress(TEXT)),
        ("x-gzip", gzip.compress(TEXT)),
        ("deflate", zlib.compress(TEXT)),  # zlib-wrapped, as the RFC says
        ("deflate", zlib.compress(TEXT)[2:-4]),  # raw deflate, as some servers send
        (None, TEXT),
        ("identity", TEXT),
    ],
)
def test_round_trip_in_small_chunks(encoding: str | None, payload: bytes) -> None:
    chunks = [payload[i : i + 100] for i in range(0, len(payload), 100)]
    assert _drain(BoundedInflater(encoding), chunks, len(TEXT) + 1) == TEXT


def test_a_bomb_yields_no_more_than_the_limit_per_call() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    payload = bomb.compress(b"\0" * (32 * 1024 * 1024)) + bomb.flush()
    inflater = BoundedInflater("gzip")
    first = inflater.feed(payload, 1000)
    assert len(first) == 1000 and inflater.has_more  # the rest waits, compressed
    assert inflater.feed(b"", 0) == b""


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, gzip", "compress"])
def test_encodings_it_cannot_bound_are_refused(encoding: str) -> None:
    with pytest.raises(UnsupportedEncoding, match="Content-Encoding"):
        BoundedInflater(encoding)


def test_corrupt_gzip_raises_zlib_error() -> None:
    with pytest.raises(zlib.error):
        BoundedInflater("gzip").feed(b"\x1f\x8b\x08\x00garbage-garbage", 1000)
