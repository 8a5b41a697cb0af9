"""Ledger tables (SQLAlchemy Core) and the project's own ordered, versioned migrations.

``schema_version`` holds one row per applied migration. :func:`migrate` applies the missing ones inside
one transaction that first takes a database-wide lock (``pg_advisory_xact_lock`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), so two processes opening a fresh database at once cannot both create it.
DDL is transactional on both backends: a failed migration leaves nothing half-applied.

Rules for changing the schema: never edit a shipped migration; append one to ``MIGRATIONS`` with the next
number, written as explicit DDL against the previous schema, and update the ``Table`` objects below so they
describe the result (a test compares the two).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeDecorator

from sitesteward.errors import ConfigurationError
from sitesteward.ledger.states import LIVE_STATES


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out (SQLite stores them naive UTC, PostgreSQL as timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the ledger: pass an aware UTC time")
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text: store one naive UTC format so ordering is chronological.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonType = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(100), nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

_LIVE_PREDICATE = "state IN ({})".format(", ".join(f"'{state.value}'" for state in sorted(LIVE_STATES)))

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("site", String(500), nullable=False),
    Column("page_url", Text, nullable=False),
    # sha256(site, page_url): a short, indexable stand-in for the page in the "one live job" index.
    Column("page_key", String(64), nullable=False),
    Column("trigger", Text, nullable=False),
    Column("goal", Text, nullable=False),
    Column("inputs", JsonType, nullable=False),
    Column("state", String(32), nullable=False),
    Column("current_step", String(100)),
    Column("stop_reason", String(64)),
    Column("failure_reason", Text),
    Column("next_action", Text),
    Column("output_location", Text),
    Column("draft_sha", String(128)),
    Column("flow_run_id", String(64)),
    Column("triage_note", Text),
    Column("version", Integer, nullable=False),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_jobs_state", "state"),
    Index("ix_jobs_site", "site"),
    Index(
        "uq_jobs_live_page",
        "page_key",
        unique=True,
        sqlite_where=text(_LIVE_PREDICATE),
        postgresql_where=text(_LIVE_PREDICATE),
    ),
)

attempts = Table(
    "attempts",
    metadata,
    Column("job_id", String(64), ForeignKey("jobs.job_id"), primary_key=True),
    Column("step", String(100), primary_key=True),
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("error_class", String(200), nullable=False),
    Column("message", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
)

steps = Table(
    "steps",
    metadata,
    Column("job_id", String(64), ForeignKey("jobs.job_id"), primary_key=True),
    Column("step", String(100), primary_key=True),
    Column("input_hash", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("output_ref", JsonType),
    Column("error", Text),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
)

effects = Table(
    "effects",
    metadata,
    Column("key", String(400), primary_key=True),
    Column("job_id", String(64), ForeignKey("jobs.job_id"), nullable=False),
    Column("step", String(100), nullable=False),
    Column("draft_sha", String(128), nullable=False),
    Column("target", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("revision", String(200)),
    Column("error", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_effects_job", "job_id"),
)

approvals = Table(
    "approvals",
    metadata,
    Column("job_id", String(64), ForeignKey("jobs.job_id"), primary_key=True),
    Column("draft_sha", String(128), primary_key=True),
    Column("decision", String(32)),
    Column("reviewer", String(200)),
    Column("notes", Text),
    Column("channel", String(16)),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("decided_at", UtcDateTime),
    Column("expires_at", UtcDateTime),
)

evidence = Table(
    "evidence",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), ForeignKey("jobs.job_id"), nullable=False),
    Column("kind", String(100), nullable=False),
    Column("check_key", String(500), nullable=False),
    # The canonical JSON text itself (not a JSON column): verification needs the exact bytes back.
    Column("payload", Text, nullable=False),
    Column("payload_sha", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    # One successor per record: two concurrent appends cannot fork a job's chain.
    UniqueConstraint("job_id", "prev_hash", name="uq_evidence_chain"),
    Index("ix_evidence_job_kind_check", "job_id", "kind", "check_key"),
)


def _v1_initial(conn: Connection) -> None:
    for table in (jobs, attempts, steps, effects, approvals, evidence):
        table.create(conn)


Migration = tuple[int, str, Callable[[Connection], None]]

#: Ordered migrations: (version, name, apply). Append only.
MIGRATIONS: list[Migration] = [
    (1, "initial tables", _v1_initial),
]

LATEST_VERSION = MIGRATIONS[-1][0]

# Any constant works; it only has to be the same in every process that migrates this database.
_PG_MIGRATION_LOCK = 0x5173_7465_7761_7264


def current_version(conn: Connection) -> int:
    """The highest applied migration (0 for an empty database)."""
    if not conn.dialect.has_table(conn, "schema_version"):
        return 0
    value = conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).first()
    return 0 if value is None else int(value[0])


def migrate(conn: Connection, *, now: datetime, migrations: list[Migration] | None = None) -> list[int]:
    """Bring the database to the latest schema inside the caller's (write) transaction.

    Args:
        conn: A connection in a transaction (SQLite: begun IMMEDIATE, so it already holds the write lock).
        now: Timestamp for ``schema_version.applied_at``.
        migrations: Override of ``MIGRATIONS`` (tests).

    Returns:
        The versions applied by this call (empty when the schema was already current).

    Raises:
        ConfigurationError: the database is newer than this code, or the dialect is unsupported.
    """
    steps_to_run = MIGRATIONS if migrations is None else migrations
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    elif conn.dialect.name != "sqlite":
        raise ConfigurationError(f"the ledger supports SQLite and PostgreSQL, not {conn.dialect.name}")
    schema_version.create(conn, checkfirst=True)
    have = current_version(conn)
    latest = steps_to_run[-1][0] if steps_to_run else 0
    if have > latest:
        raise ConfigurationError(
            f"the ledger database is at schema version {have}, newer than this code ({latest}): "
            "upgrade sitesteward"
        )
    applied: list[int] = []
    for version, name, apply in steps_to_run:
        if version <= have:
            continue
        apply(conn)
        conn.execute(schema_version.insert().values(version=version, name=name, applied_at=now))
        applied.append(version)
    return applied


def row_dict(row: Any) -> dict[str, Any]:
    """A SQL result row as a plain dict."""
    return dict(row._mapping)
