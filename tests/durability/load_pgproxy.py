"""A TCP proxy on loopback in front of PostgreSQL that can cut connections at chosen moments.

A database restart cuts every connection wherever it is; this proxy does the same on cue, so a test can
lose the connection exactly in a statement or exactly after the server received COMMIT (the case where
the client cannot know whether its transaction committed), or refuse new connections for a while.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self


@dataclass
class _Pair:
    client: socket.socket
    server: socket.socket
    #: Set once COMMIT went to the server under ``drop_after_commit``: its answer never reaches the client.
    doomed: bool = False
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class PgProxy:
    """Forward ``127.0.0.1:<port>`` to the real server; arm a cut with the attributes below.

    Attributes:
        drop_after_commit: The next COMMIT is forwarded, then the connection is cut before the server's
            answer reaches the client (the commit happened; the client sees a lost connection).
        cut_on: The next client message containing these bytes is not forwarded; the connection is cut.
        refuse: New connections are accepted and closed at once (the server is "restarting").
    """

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.upstream = upstream
        self.drop_after_commit = False
        self.cut_on: bytes | None = None
        self.refuse = False
        self.cuts = 0
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def url_for(self, url: str) -> str:
        """``url`` (a PostgreSQL URL on the real server) rewritten to go through the proxy."""
        host, port = self.upstream
        return url.replace(f"@{host}:{port}/", f"@127.0.0.1:{self.port}/")

    def cut_all(self) -> None:
        """Cut every open connection (what a server restart does to its clients)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._listener.close()
        self.cut_all()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            pair = _Pair(client, server)
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=self._upstream, args=(pair,), daemon=True).start()
            threading.Thread(target=self._downstream, args=(pair,), daemon=True).start()

    def _cut(self, pair: _Pair) -> None:
        self.cuts += 1
        pair.close()

    def _upstream(self, pair: _Pair) -> None:
        try:
            while chunk := pair.client.recv(65536):
                if self.cut_on is not None and self.cut_on in chunk:
                    self.cut_on = None
                    self._cut(pair)
                    return
                if self.drop_after_commit and b"COMMIT" in chunk:
                    self.drop_after_commit = False
                    pair.doomed = True
                pair.server.sendall(chunk)
        except OSError:
            pass
        pair.close()

    def _downstream(self, pair: _Pair) -> None:
        try:
            while chunk := pair.server.recv(65536):
                if pair.doomed:  # the server has committed and answered: the client never hears it
                    self._cut(pair)
                    return
                pair.client.sendall(chunk)
        except OSError:
            pass
        pair.close()
