"""Shared fixtures: isolated settings per test and the real services (PostgreSQL, Redis).

On a laptop without the services the service-backed tests skip with the reason; with
``SITESTEWARD_REQUIRE_SERVICES=1`` (set by ``scripts/dev.py test --all`` and CI) a missing service fails.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sitesteward.settings import get_settings
from tests.durability.scenarios import REGENERATE, ScenarioPlugin

POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--write-scenarios",
        action="store_true",
        dest="write_scenarios",
        help=f"rewrite README.md's scenario table at the end of the session (full table: {REGENERATE})",
    )


def pytest_configure(config: pytest.Config) -> None:
    # The scenario table plugin (tests/durability/scenarios.py): outcomes of @pytest.mark.scenario tests.
    config.pluginmanager.register(ScenarioPlugin(config), "sitesteward-scenarios")


def _require_services() -> bool:
    return os.environ.get("SITESTEWARD_REQUIRE_SERVICES") == "1"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def service_unavailable(name: str, reason: str) -> None:
    """Skip (laptop) or fail (CI) a test whose service is missing."""
    message = f"{name} unavailable: {reason}"
    if _require_services():
        pytest.fail(message + " (SITESTEWARD_REQUIRE_SERVICES=1: CI must run every test)")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test gets its own data directory and loopback crawling allowed."""
    data_dir = tmp_path / "steward-data"
    monkeypatch.setenv("SITESTEWARD_DATA_DIR", str(data_dir))
    monkeypatch.setenv("SITESTEWARD_ALLOW_PRIVATE", "true")
    for name in ("SITESTEWARD_DATABASE_URL", "SITESTEWARD_LLM_API_KEY", "SITESTEWARD_LLM_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    if not _port_open(POSTGRES_HOST, POSTGRES_PORT):
        service_unavailable("PostgreSQL", f"nothing listens on {POSTGRES_HOST}:{POSTGRES_PORT}")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        service_unavailable("PostgreSQL", "psycopg is not installed (pip install -e '.[postgres]')")
    return f"postgresql+psycopg://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/postgres"


@contextmanager
def fresh_postgres_database(prefix: str, driver: str = "psycopg") -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its SQLAlchemy URL (``driver``), drop it afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    dsn = f"host={POSTGRES_HOST} port={POSTGRES_PORT} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+{driver}://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    with fresh_postgres_database("steward_test") as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    if not _port_open(REDIS_HOST, REDIS_PORT):
        service_unavailable("Redis", f"nothing listens on {REDIS_HOST}:{REDIS_PORT}")
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One real Prefect API server (``prefect_test_harness``) shared by the whole test session.

    Starting it costs 12–15 s, so every flow test shares it; each test still gets its own data
    directory (``isolated_settings``), hence its own ledger, crawl store and result files.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
