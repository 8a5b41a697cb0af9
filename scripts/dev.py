#!/usr/bin/env python3
"""One entry point for newcomers and CI: ``python3 scripts/dev.py demo|test|check|bench``.

It needs only Python 3.11+ and pip: it creates ``.venv`` beside the project, installs the project with its
test extras into it (again only when ``pyproject.toml`` changed), then runs the command there.

    demo   serve the bundled example site on loopback and run the full loop on it
    test   lint, type-check and run the tests (quick: without the slow suites; --all or CI=true: everything);
           --write-scenarios also rewrites the README's scenario table from the run (use it with --all)
    check  lint and type-check only
    bench  run the benchmarks under bench/
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".sitesteward-installed"


def _run(*cmd: str | Path, env: dict[str, str] | None = None) -> int:
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, env=env)


def ensure_env(extras: str = "test") -> None:
    """Create the virtual environment and install the project into it when needed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may run under an older python3
        sys.exit("sitesteward needs Python 3.11 or newer")
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want:
        return
    print(f"installing sitesteward[{extras}] into .venv (first run only) ...", flush=True)
    rc = _run(PY, "-m", "pip", "install", "--quiet", "-e", f".[{extras}]")
    if rc:
        sys.exit(rc)
    STAMP.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    if command == "demo":
        ensure_env()
        return _run(BIN / "sitesteward", "demo", *rest)
    if command in {"test", "check"}:
        ensure_env()
        rc = _run(PY, "-m", "ruff", "check", ".") or _run(PY, "-m", "ruff", "format", "--check", ".")
        rc = rc or _run(PY, "-m", "mypy")
        if rc or command == "check":
            return rc
        env = dict(os.environ)
        # The README's scenario table names the command that wrote it (tests/durability/scenarios.py).
        env["SITESTEWARD_DEV_COMMAND"] = " ".join(["python3 scripts/dev.py", *argv])
        args = list(rest)
        if ci or "--all" in args:
            args = [a for a in args if a != "--all"]
            # Everything runs, and a service-backed test that would skip fails instead.
            env["SITESTEWARD_REQUIRE_SERVICES"] = "1"
        else:
            args = ["-m", "not slow", *args]
        # The slowest tests are listed at the end: .ci/run must stay under 30 minutes.
        return _run(PY, "-m", "pytest", "--durations=20", *args, env=env)
    if command == "bench":
        ensure_env("test,bench")
        return _run(PY, "-m", "bench", *rest)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
