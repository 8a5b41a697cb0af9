"""Serve a directory on 127.0.0.1 for the benchmarks: nginx when installed, else a threaded Python server.

nginx (Debian's ``nginx`` package, found on ``PATH`` or in ``/usr/sbin``) is preferred: one worker,
``sendfile``, keep-alive, and ``ETag`` / ``Last-Modified`` on every file, so conditional requests get
real 304s and the server is never the bottleneck of a crawl it serves. It runs in the foreground
(``daemon off``) from a private config in a temp directory; nothing system-wide is touched.

Without nginx, ``python -m bench.serve`` (this module) runs ``http.server.ThreadingHTTPServer`` with
HTTP/1.1 keep-alive; it answers ``If-Modified-Since`` with 304 but sends no ETag, and one CPython
process serves a few thousand small pages a second at best, so numbers measured behind it are a lower
bound of the crawler's speed. Results record which server was used (``server.kind``).

Both write an access log of ``STATUS METHOD PATH`` lines, which the benchmarks count (e.g. 304s).

    python -m bench.serve /usr/share/doc/python3/html      # serve until Ctrl-C (nginx when installed)
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

ServerKind = Literal["nginx", "python"]
START_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class StaticServer:
    """A running static server."""

    kind: ServerKind
    base_url: str
    root: Path
    access_log: Path
    pid: int

    def log_offset(self) -> int:
        """The access log's current size: pass it to :meth:`status_counts` to count one phase."""
        return self.access_log.stat().st_size if self.access_log.exists() else 0

    def status_counts(self, since: int = 0) -> dict[str, int]:
        """Responses by status code logged after byte offset ``since``."""
        if not self.access_log.exists():
            return {}
        with self.access_log.open("rb") as log:
            log.seek(since)
            data = log.read().decode(errors="replace")
        counts = Counter(line.split(" ", 1)[0] for line in data.splitlines() if line)
        return dict(sorted(counts.items()))


def find_nginx() -> str | None:
    """Path of the nginx binary, or None."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (a tiny race with other processes is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_config(root: Path, port: int, work_dir: Path) -> str:
    """The private nginx configuration serving ``root`` on ``127.0.0.1:port``."""
    user = ""
    if os.geteuid() == 0:
        # Workers drop to nobody; served trees must be world-readable (the generator makes them so).
        nobody = pwd.getpwnam("nobody")
        user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"
    temp_paths = "\n".join(
        f"    {kind}_temp_path {work_dir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    mime = "/etc/nginx/mime.types"
    include_mime = f"include {mime};" if Path(mime).exists() else "types { text/html html; text/xml xml; }"
    return f"""
{user}
daemon off;
master_process on;
worker_processes 1;
pid {work_dir / "nginx.pid"};
error_log {work_dir / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    {include_mime}
    default_type application/octet-stream;
    log_format bench '$status $request_method $request_uri';
    access_log {work_dir / "access.log"} bench buffer=64k flush=200ms;
{temp_paths}
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.html;
    }}
}}
"""


@contextlib.contextmanager
def serve_directory(
    root: Path, *, prefer: Literal["auto", "nginx", "python"] = "auto"
) -> Iterator[StaticServer]:
    """Serve ``root`` on a free loopback port for the duration of the ``with`` block.

    Args:
        root: directory to serve (symlinks are resolved first).
        prefer: ``auto`` uses nginx when installed, else the Python server.

    Yields:
        The running server; it is stopped and its temp directory removed on exit, whatever happens.

    Raises:
        RuntimeError: the server did not answer within 15 seconds (its log tail is in the message).
    """
    root = root.resolve()
    nginx = find_nginx() if prefer in {"auto", "nginx"} else None
    if prefer == "nginx" and nginx is None:
        raise RuntimeError("nginx is not installed: apt-get install -y nginx")
    work_dir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    work_dir.chmod(0o755)
    port = free_port()
    access_log = work_dir / "access.log"
    kind: ServerKind
    if nginx is not None:
        kind = "nginx"
        config = work_dir / "nginx.conf"
        config.write_text(nginx_config(root, port, work_dir))
        command = [nginx, "-p", str(work_dir), "-c", str(config), "-e", str(work_dir / "error.log")]
    else:
        kind = "python"
        command = [sys.executable, "-m", "bench.serve", str(root), "--port", str(port)]
        command += ["--access-log", str(access_log), "--python"]
    stderr_path = work_dir / "server.err"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    try:
        base_url = f"http://127.0.0.1:{port}/"
        _wait_until_serving(base_url, process, stderr_path)
        yield StaticServer(kind=kind, base_url=base_url, root=root, access_log=access_log, pid=process.pid)
    finally:
        stop_process_group(process)
        shutil.rmtree(work_dir, ignore_errors=True)


def stop_process_group(process: subprocess.Popen[Any], grace_seconds: float = 5.0) -> None:
    """SIGTERM the process's group (it leads its own session), SIGKILL it after ``grace_seconds``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace_seconds)


def _wait_until_serving(base_url: str, process: subprocess.Popen[Any], stderr_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(base_url, timeout=1.0) as response:
                response.read()
                return
        except urllib.error.HTTPError:
            return  # answering, even if with 403/404
        except OSError:
            time.sleep(0.05)
    tail = stderr_path.read_text(errors="replace")[-2000:] if stderr_path.exists() else ""
    raise RuntimeError(f"static server {base_url} did not start: {tail}")


class _LoggingHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like nginx
    access_log: Any = None

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.access_log is not None:
            status = code.value if hasattr(code, "value") else code
            self.access_log.write(f"{status} {self.command} {self.path}\n")

    def log_message(self, format: str, *args: Any) -> None:
        return


def _serve_python(root: Path, port: int, access_log: Path | None) -> None:
    log = access_log.open("a", buffering=1) if access_log else None
    _LoggingHandler.access_log = log

    def handler(*args: Any) -> _LoggingHandler:
        return _LoggingHandler(*args, directory=str(root))

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256
    with ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.serve DIR [--port N] [--python]``: serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--port", type=int, default=0, help="with --python only (default: a free port)")
    parser.add_argument("--access-log", type=Path, default=None, help="with --python only")
    parser.add_argument("--python", action="store_true", help="force the Python server")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"{args.root} is not a directory")
    if args.python:
        _serve_python(args.root.resolve(), args.port or free_port(), args.access_log)
        return 0
    # Turn SIGTERM (and SIGINT even when inherited as ignored) into SystemExit so the finally stops nginx.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(0))
    with serve_directory(args.root) as server:
        print(f"serving {server.root} at {server.base_url} with {server.kind} (Ctrl-C stops)", flush=True)
        signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
