"""The ledger: the source of truth for business state, approvals, side effects and evidence.

Every write runs in one short transaction that first locks the job's row (``SELECT ... FOR UPDATE`` on
PostgreSQL; on SQLite every write transaction is ``BEGIN IMMEDIATE``, which holds the database's single
write lock), so checks and writes about one job never interleave. Job rows change only by compare-and-set
on ``version``; the version is also the lease's fencing token, so a frozen worker's late writes fail with
:class:`~sitesteward.errors.StaleVersion` once someone else has moved the job.

Database errors (locked, deadlock) surface as :class:`LedgerUnavailable`, a transient error that this
module does not retry itself (the caller's retries do, one layer only). A *lost connection* is different:
a database restart must not fail every job that happened to be writing, so each public method re-runs
its whole transaction when the connection was lost (``pool_pre_ping`` replaces stale pooled connections
first), for at most ``reconnect_seconds``. A re-run is safe because every write is compare-and-set or
insert-if-absent; where a lost COMMIT may nevertheless have succeeded and the re-run would answer
differently (a compare-and-set that already moved the version, an attempt counted twice), the method
first re-reads the database to find out whether its write is there, and returns it if so.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, Final, ParamSpec, Self, TypeVar

from pydantic import BaseModel
from sqlalchemy import Engine, bindparam, create_engine, event, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.sql.schema import Table

from sitesteward.errors import (
    ConfigurationError,
    IllegalTransition,
    PermanentError,
    StaleVersion,
    TransientError,
)
from sitesteward.ledger import schema
from sitesteward.ledger.clock import Clock, SystemClock, default_clock
from sitesteward.ledger.evidence import GENESIS, canonical_json, record_hash, sha256_text
from sitesteward.ledger.records import (
    ApprovalRecord,
    AttemptRecord,
    ChainVerification,
    Channel,
    Decision,
    EffectRecord,
    EffectStatus,
    EvidenceRecord,
    JobRecord,
    StepRecord,
    StepStatus,
    Submission,
)
from sitesteward.ledger.states import (
    INITIAL_STATES,
    LIVE_STATES,
    TERMINAL_STATES,
    JobState,
    StopReason,
    check_transition,
)

# ------------------------------------------------------------------------------------------- errors
# TODO(errors.py owner): these belong in sitesteward/errors.py's tree; kept here until they move.


class LedgerUnavailable(TransientError):
    """The ledger database is locked, unreachable or aborted the transaction (retry).

    Attributes:
        connection_lost: The connection died or could not be made (a restart, a network cut), as
            opposed to a lock timeout or a deadlock.
        commit_uncertain: The connection died during COMMIT: the transaction may have committed.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        connection_lost: bool = False,
        commit_uncertain: bool = False,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.connection_lost = connection_lost
        self.commit_uncertain = commit_uncertain


class UnknownJob(PermanentError):
    """No job with this id."""


class LeaseHeld(TransientError):
    """Another owner holds an unexpired lease on the job (``retry_after``: seconds until it expires)."""


class ApprovalRefused(PermanentError):
    """A decision conflicts with the recorded one, came after expiry, or names a draft that is not current."""


# ------------------------------------------------------------------------------------------ helpers


class _Keep:
    """Sentinel: leave the column as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()

_JOB_FIELDS = (
    "current_step",
    "failure_reason",
    "next_action",
    "output_location",
    "draft_sha",
    "flow_run_id",
    "triage_note",
)

#: Live states that are not waiting on a worker: a person (review) or the planner's budget (refresh_needed).
_WAITING_STATES = frozenset({JobState.awaiting_review, JobState.refresh_needed})

PUBLISH_STEP = "publish"


def job_id_for(site: str, page_url: str, trigger: str) -> str:
    """The stable job id: a hash of the site, the page URL and the trigger fingerprint."""
    return sha256_text(canonical_json({"site": site, "page_url": page_url, "trigger": trigger}))[:32]


def page_key_for(site: str, page_url: str) -> str:
    """The key of a page in the "one live job per page" index."""
    return sha256_text(canonical_json({"site": site, "page_url": page_url}))


def effect_key(job_id: str, step: str, draft_sha: str) -> str:
    """The idempotency key of one side effect: ``job_id:step:draft_sha``."""
    return f"{job_id}:{step}:{draft_sha}"


def _json_object(value: Mapping[str, Any] | BaseModel | None) -> dict[str, Any]:
    if value is None:
        return {}
    loaded: dict[str, Any] = json.loads(canonical_json(value))
    return loaded


def _job(row: Mapping[Any, Any]) -> JobRecord:
    data = {k: v for k, v in row.items() if k != "page_key"}
    return JobRecord.model_validate(data)


def _step(row: Mapping[Any, Any]) -> StepRecord:
    return StepRecord.model_validate(dict(row))


def _effect(row: Mapping[Any, Any]) -> EffectRecord:
    return EffectRecord.model_validate(dict(row))


def _approval(row: Mapping[Any, Any]) -> ApprovalRecord:
    return ApprovalRecord.model_validate(dict(row))


def _evidence(row: Mapping[Any, Any]) -> EvidenceRecord:
    data = dict(row)
    data["check"] = data.pop("check_key")
    data["payload"] = json.loads(data["payload"])
    return EvidenceRecord.model_validate(data)


# ------------------------------------------------------------------------------ built statements

# The statements of the hot paths (every step of every job runs several) are built once: building a Core
# statement and its cache key costs about as much CPU as executing it, and a statement object that is
# used again keeps its cache key. What they say is exactly what the inline versions said.
_J, _S, _E, _A = schema.jobs.c, schema.steps.c, schema.evidence.c, schema.approvals.c
_FIND_JOB = select(schema.jobs).where(_J.job_id == bindparam("p_job_id"))
_LOCK_JOB = _FIND_JOB.with_for_update()
_STEP = select(schema.steps).where(
    _S.job_id == bindparam("p_job_id"),
    _S.step == bindparam("p_step"),
    _S.input_hash == bindparam("p_input_hash"),
)
_LATEST_EVIDENCE = (
    select(schema.evidence)
    .where(
        _E.job_id == bindparam("p_job_id"),
        _E.kind == bindparam("p_kind"),
        _E.check_key == bindparam("p_check"),
    )
    .order_by(_E.seq.desc())
    .limit(1)
)
_CHAIN_HEAD = select(_E.hash).where(_E.job_id == bindparam("p_job_id")).order_by(_E.seq.desc()).limit(1)
_FIND_APPROVAL = select(schema.approvals).where(
    _A.job_id == bindparam("p_job_id"), _A.draft_sha == bindparam("p_draft_sha")
)
_INSERT_EVIDENCE = schema.evidence.insert().returning(*schema.evidence.c)
_LAST_ATTEMPT = (
    select(schema.attempts.c.number)
    .where(schema.attempts.c.job_id == bindparam("p_job_id"), schema.attempts.c.step == bindparam("p_step"))
    .order_by(schema.attempts.c.number.desc())
)
_FIND_EFFECT = select(schema.effects).where(schema.effects.c.key == bindparam("p_key"))
_INSERT_IGNORE: dict[tuple[str, str], Any] = {}
_JOB_CAS: dict[tuple[str, ...], Any] = {}
_STEP_UPDATE: dict[tuple[str, ...], Any] = {}


def _job_cas(columns: tuple[str, ...]) -> Any:
    """``UPDATE jobs SET <columns> WHERE job_id = :p_job_id AND version = :p_version`` (built once)."""
    statement = _JOB_CAS.get(columns)
    if statement is None:
        statement = (
            update(schema.jobs)
            .where(_J.job_id == bindparam("p_job_id"), _J.version == bindparam("p_version"))
            .values({name: bindparam(f"v_{name}", type_=_J[name].type) for name in columns})
        )
        _JOB_CAS[columns] = statement
    return statement


def _step_update(columns: tuple[str, ...]) -> Any:
    """``UPDATE steps SET <columns> WHERE <step run> AND status <> 'completed' RETURNING *`` (built once)."""
    statement = _STEP_UPDATE.get(columns)
    if statement is None:
        statement = (
            update(schema.steps)
            .where(
                _S.job_id == bindparam("p_job_id"),
                _S.step == bindparam("p_step"),
                _S.input_hash == bindparam("p_input_hash"),
                _S.status != StepStatus.completed.value,
            )
            .values({name: bindparam(f"v_{name}", type_=_S[name].type) for name in columns})
            .returning(*schema.steps.c)
        )
        _STEP_UPDATE[columns] = statement
    return statement


def _insert_ignoring(dialect: str, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING *``, the values given at execution (built once)."""
    statement = _INSERT_IGNORE.get((dialect, table.name))
    if statement is None:
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(table).on_conflict_do_nothing().returning(*table.c)
        _INSERT_IGNORE[(dialect, table.name)] = statement
    return statement


def _step_params(job_id: str, step: str, input_hash: str) -> dict[str, str]:
    return {"p_job_id": job_id, "p_step": step, "p_input_hash": input_hash}


def _insert_ignore(conn: Connection, table: Table, values: Mapping[str, Any]) -> bool:
    """INSERT unless any unique constraint (primary key or partial index) says no; True if inserted."""
    # RETURNING, not rowcount: SQLAlchemy does not keep an INSERT's rowcount on every driver.
    return conn.execute(_insert_ignoring(conn.dialect.name, table), dict(values)).first() is not None


def _insert_step(conn: Connection, values: Mapping[str, Any]) -> StepRecord | None:
    """INSERT a step run unless it exists; the inserted row (None when it existed already)."""
    row = conn.execute(_insert_ignoring(conn.dialect.name, schema.steps), dict(values)).first()
    return None if row is None else _step(row._mapping)


def _update_unfinished_step(
    conn: Connection, job_id: str, step: str, input_hash: str, values: Mapping[str, Any]
) -> StepRecord | None:
    """UPDATE a step run that exists and is not completed; the updated row (None when there was none)."""
    params = {f"v_{name}": value for name, value in values.items()}
    statement = _step_update(tuple(values))
    row = conn.execute(statement, {**params, **_step_params(job_id, step, input_hash)}).first()
    return None if row is None else _step(row._mapping)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN, so writes take the write lock up front
        # (BEGIN IMMEDIATE) instead of failing to upgrade a read lock half-way through.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            _enable_wal(cursor, busy_timeout_ms / 1000)
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get("ledger_read_only", False)
        conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def _enable_wal(cursor: Any, timeout_seconds: float) -> None:
    # Switching a database to WAL needs every other connection out of the way, and SQLite answers
    # "database is locked" at once instead of calling the busy handler: retry until the busy timeout.
    deadline = time.monotonic() + timeout_seconds
    delay = 0.01
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def create_ledger_engine(url: str, *, busy_timeout_ms: int = 30_000) -> Engine:
    """An engine for the ledger: SQLite (file, WAL, busy timeout) or PostgreSQL (psycopg 3).

    Raises:
        ConfigurationError: an unsupported backend or an in-memory SQLite database.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if not database or database == ":memory:" or database.startswith("file:"):
            raise ConfigurationError(
                "the SQLite ledger needs a file path (in-memory databases are per connection)"
            )
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": busy_timeout_ms / 1000})
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    raise ConfigurationError(f"the ledger supports sqlite:/// and postgresql:// URLs, not {backend}")


# -------------------------------------------------------------------------------- lost connections

P = ParamSpec("P")
R = TypeVar("R")

#: SQLSTATE classes of a connection that is gone or not accepting work yet: 08 connection exception,
#: 57P01-57P03 admin/crash shutdown and "the database system is starting up".
_LOST_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def _connection_lost(exc: DBAPIError, phase: str, dialect: str) -> bool:
    """Tell whether ``exc`` means the connection is gone (retry on a new one), not a lock or a deadlock."""
    if isinstance(exc, IntegrityError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_LOST_SQLSTATES):
        return True
    # Could not connect at all (refused while the server restarts); SQLite has no server to wait for.
    return phase == "connect" and dialect != "sqlite"


def _reconnecting(method: Callable[Concatenate[Ledger, P], R]) -> Callable[Concatenate[Ledger, P], R]:
    """Re-run a public method when its connection was lost; only for methods safe to re-run as they are."""

    @functools.wraps(method)
    def wrapper(self: Ledger, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._retry(lambda: method(self, *args, **kwargs), None)

    return wrapper


def _reconnecting_settled(
    settled: Callable[..., R | None], *, pin_clock: bool = False
) -> Callable[[Callable[Concatenate[Ledger, P], R]], Callable[Concatenate[Ledger, P], R]]:
    """Re-run a public method when its connection was lost, first checking whether a lost COMMIT landed.

    Args:
        settled: Called with the method's arguments after a COMMIT whose outcome is unknown; returns the
            method's result if the write is in the database, None if it is not (then the method re-runs).
        pin_clock: Use one timestamp for the whole call, re-runs included, so ``settled`` can recognise
            the rows this call wrote.
    """

    def decorate(method: Callable[Concatenate[Ledger, P], R]) -> Callable[Concatenate[Ledger, P], R]:
        @functools.wraps(method)
        def wrapper(self: Ledger, /, *args: P.args, **kwargs: P.kwargs) -> R:
            def check() -> R | None:
                return settled(self, *args, **kwargs)

            if not pin_clock or self._local.__dict__.get("now") is not None:
                return self._retry(lambda: method(self, *args, **kwargs), check)
            self._local.now = self.clock.now()
            try:
                return self._retry(lambda: method(self, *args, **kwargs), check)
            finally:
                self._local.now = None

        return wrapper

    return decorate


def _transition_settled(
    ledger: Ledger, job_id: str, to: JobState, *, expected_version: int, **_: Any
) -> JobRecord | None:
    # Only one compare-and-set can take the job from expected_version to expected_version + 1.
    job = ledger.find_job(job_id)
    if job is not None and job.version == expected_version + 1 and job.state is JobState(to):
        return job
    return None


def _update_settled(ledger: Ledger, job_id: str, *, expected_version: int, **fields: Any) -> JobRecord | None:
    job = ledger.find_job(job_id)
    if job is None or job.version != expected_version + 1:
        return None
    changes = _field_changes(**fields)
    if all(getattr(job, name) == value for name, value in changes.items()):
        return job
    return None


def _release_settled(ledger: Ledger, job_id: str, owner: str, fence: int) -> JobRecord | None:
    job = ledger.find_job(job_id)
    if job is not None and job.version == fence + 1 and job.lease_owner is None:
        return job
    return None


def _attempt_settled(
    ledger: Ledger, job_id: str, step: str, error_class: str, message: str, **_: Any
) -> int | None:
    # The clock is pinned for the call: an attempt with exactly this timestamp is the one we wrote.
    at = ledger._now()
    for attempt in ledger.attempt_history(job_id, step):
        if attempt.at == at and attempt.error_class == error_class and attempt.message == message[:4000]:
            return attempt.number
    return None


def _start_settled(ledger: Ledger, job_id: str, step: str, input_hash: str, **_: Any) -> StepRecord | None:
    current = ledger.get_step(job_id, step, input_hash)
    if current is not None and current.started_at == ledger._now():
        return current
    return None


# ------------------------------------------------------------------------------------------- ledger


class Ledger:
    """Jobs, steps, attempts, effects, approvals and evidence in one SQL database.

    Args:
        engine: From :func:`create_ledger_engine` (use :meth:`open` unless you need to share one).
        clock: Where "now" comes from (default: the UTC system clock).
        reconnect_seconds: How long a call keeps re-running after losing its connection (a database
            restart) before it gives up with :class:`LedgerUnavailable`.
    """

    def __init__(
        self, engine: Engine, *, clock: Clock | None = None, reconnect_seconds: float = 30.0
    ) -> None:
        self._engine = engine
        self.clock: Clock = clock or SystemClock()
        self.reconnect_seconds = reconnect_seconds
        #: How many times a call was re-run after losing its connection (for logs and tests).
        self.reconnects = 0
        self._local = threading.local()

    # ------------------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, url: str | None = None, *, clock: Clock | None = None, migrate: bool = True) -> Self:
        """Connect to the ledger at ``url`` and bring its schema up to date.

        Safe when several processes open a fresh database at once (the migration takes a lock).

        Args:
            url: A SQLAlchemy URL; default: ``Settings.ledger_url`` (SQLite in the data directory).
            clock: Injected clock (tests).
            migrate: Apply missing migrations (default). Without it the schema must already be current.

        Raises:
            ConfigurationError: bad URL, or the database is newer than this code (or older, with
                ``migrate=False``).
            LedgerUnavailable: the database cannot be reached or stays locked.
        """
        if url is None:
            from sitesteward.settings import get_settings

            url = get_settings().ledger_url
        ledger = cls(create_ledger_engine(url), clock=clock or default_clock())
        try:
            if migrate:
                ledger.migrate()
            else:
                have = ledger.schema_version()
                if have != schema.LATEST_VERSION:
                    raise ConfigurationError(
                        f"ledger schema is at {have}, this code needs {schema.LATEST_VERSION}: run migrate"
                    )
        except BaseException:
            ledger.close()
            raise
        return ledger

    @_reconnecting
    def migrate(self) -> list[int]:
        """Apply missing migrations (idempotent). Returns the versions applied by this call."""
        with self._tx() as conn:
            return schema.migrate(conn, now=self.clock.now())

    @_reconnecting
    def schema_version(self) -> int:
        """The database's schema version (0 when empty)."""
        with self._tx(write=False) as conn:
            return schema.current_version(conn)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Release the connection pool."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[Connection]:
        phase = "connect"
        try:
            with self._engine.connect() as conn:
                phase = "statement"
                if not write:
                    conn.execution_options(ledger_read_only=True)
                with conn.begin():
                    yield conn
                    phase = "commit"
        except (OperationalError, InterfaceError) as exc:
            lost = _connection_lost(exc, phase, self.dialect)
            raise LedgerUnavailable(
                f"ledger database error: {exc.orig!r}",
                connection_lost=lost,
                commit_uncertain=lost and write and phase == "commit",
            ) from exc

    def _retry(self, call: Callable[[], R], settled: Callable[[], R | None] | None) -> R:
        """Run ``call``; after a lost connection, wait and run it again (within ``reconnect_seconds``).

        After a COMMIT whose outcome is unknown, ``settled`` says whether the write is already there.
        """
        deadline = time.monotonic() + self.reconnect_seconds
        delay = 0.05
        uncertain = False
        while True:
            try:
                if uncertain and settled is not None:
                    done = settled()
                    if done is not None:
                        return done
                    uncertain = False  # known not written: running it again is right
                return call()
            except LedgerUnavailable as exc:
                if not exc.connection_lost or time.monotonic() + delay > deadline:
                    raise
                uncertain = uncertain or exc.commit_uncertain
                self.reconnects += 1
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _now(self) -> datetime:
        pinned: datetime | None = self._local.__dict__.get("now")
        return pinned if pinned is not None else self.clock.now()

    # ----------------------------------------------------------------------------------- jobs

    @_reconnecting
    def submit_job(
        self,
        site: str,
        page_url: str,
        *,
        goal: str,
        trigger: str,
        inputs: Mapping[str, Any] | BaseModel | None = None,
        initial_state: JobState = JobState.planned,
    ) -> Submission:
        """Create the job for (site, page, trigger), or return the one that already exists.

        A duplicate submission (same site, URL and trigger) returns the existing job, whatever its state.
        A new trigger for a page that already has a live job returns that live job
        (``duplicate_of_live``): never two live jobs for one page.

        Args:
            site: The site's name or base URL.
            page_url: The page's normalised URL.
            goal: What the job is for, for people.
            trigger: The trigger fingerprint (e.g. a hash of the findings and the page's text hash).
            inputs: JSON-compatible inputs kept with the job.
            initial_state: ``planned`` (default) or ``refresh_needed``.

        Raises:
            IllegalTransition: ``initial_state`` is not an initial state.
        """
        initial_state = JobState(initial_state)
        if initial_state not in INITIAL_STATES:
            raise IllegalTransition(f"a job cannot start in {initial_state}")
        job_id = job_id_for(site, page_url, trigger)
        page_key = page_key_for(site, page_url)
        now = self._now()
        values = {
            "job_id": job_id,
            "site": site,
            "page_url": page_url,
            "page_key": page_key,
            "trigger": trigger,
            "goal": goal,
            "inputs": _json_object(inputs),
            "state": initial_state.value,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        for _ in range(5):
            with self._tx() as conn:
                if _insert_ignore(conn, schema.jobs, values):
                    return Submission(job=self._read_job(conn, job_id), created=True)
                existing = self._find_job(conn, job_id)
                if existing is not None:
                    return Submission(job=existing, created=False)
                live = self._live_job(conn, page_key)
                if live is not None:
                    return Submission(job=live, created=False, duplicate_of_live=True)
            # The conflicting live job ended between our insert and our read (PostgreSQL): try again.
        raise LedgerUnavailable(f"could not submit job {job_id}: the page's live job kept changing")

    @_reconnecting
    def get_job(self, job_id: str) -> JobRecord:
        """The job ``job_id``.

        Raises:
            UnknownJob: there is no such job.
        """
        with self._tx(write=False) as conn:
            return self._read_job(conn, job_id)

    @_reconnecting
    def find_job(self, job_id: str) -> JobRecord | None:
        """The job ``job_id``, or None when there is none."""
        with self._tx(write=False) as conn:
            return self._find_job(conn, job_id)

    @_reconnecting
    def list_jobs(
        self,
        states: Iterable[JobState] | None = None,
        site: str | None = None,
        page_url: str | None = None,
    ) -> list[JobRecord]:
        """Jobs, oldest first, optionally only in ``states``, for ``site`` and/or for one ``page_url``."""
        query = select(schema.jobs).order_by(schema.jobs.c.created_at, schema.jobs.c.job_id)
        if states is not None:
            query = query.where(schema.jobs.c.state.in_([JobState(s).value for s in states]))
        if site is not None:
            query = query.where(schema.jobs.c.site == site)
        if page_url is not None:
            query = query.where(schema.jobs.c.page_url == page_url)
        with self._tx(write=False) as conn:
            return [_job(row._mapping) for row in conn.execute(query)]

    @_reconnecting
    def live_job_for_page(self, site: str, page_url: str) -> JobRecord | None:
        """The page's one live job, if any."""
        with self._tx(write=False) as conn:
            return self._live_job(conn, page_key_for(site, page_url))

    @_reconnecting
    def stalled_jobs(
        self, now: datetime | None = None, *, idle_after: timedelta = timedelta(minutes=30)
    ) -> list[JobRecord]:
        """Live jobs that should be moving but are not (for the sweeper).

        A job is stalled when its lease expired, or when nobody holds a lease and it has not changed for
        ``idle_after``. Jobs waiting for a reviewer or for the planner (``awaiting_review``,
        ``refresh_needed``) are not stalled: approval expiry handles the former.
        """
        now = now or self._now()
        jobs = schema.jobs.c
        states = [s.value for s in LIVE_STATES - _WAITING_STATES]
        query = (
            select(schema.jobs)
            .where(jobs.state.in_(states))
            .where(
                or_(
                    (jobs.lease_owner.is_not(None)) & (jobs.lease_expires_at <= now),
                    (jobs.lease_owner.is_(None)) & (jobs.updated_at <= now - idle_after),
                )
            )
            .order_by(jobs.updated_at)
        )
        with self._tx(write=False) as conn:
            return [_job(row._mapping) for row in conn.execute(query)]

    @_reconnecting_settled(_transition_settled)
    def transition(
        self,
        job_id: str,
        to: JobState,
        *,
        expected_version: int,
        stop_reason: StopReason | None = None,
        current_step: str | _Keep | None = KEEP,
        failure_reason: str | _Keep | None = KEEP,
        next_action: str | _Keep | None = KEEP,
        output_location: str | _Keep | None = KEEP,
        draft_sha: str | _Keep | None = KEEP,
        flow_run_id: str | _Keep | None = KEEP,
        triage_note: str | _Keep | None = KEEP,
    ) -> JobRecord:
        """Move the job to ``to`` by compare-and-set on its version (the fencing token).

        Besides the table in :mod:`sitesteward.ledger.states`, the ledger checks the recorded facts an
        edge depends on: ``awaiting_review`` needs a draft hash; ``approved`` / ``rejected`` need that
        decision recorded for exactly the job's draft; ``published`` needs the publish effect for that
        draft applied or reconciled. Terminal states and ``monitoring`` release the lease.

        Args:
            job_id: The job.
            to: The new state.
            expected_version: The version the caller last saw (or its lease's fencing token).
            stop_reason: Required for terminal states, refused otherwise.
            current_step, failure_reason, next_action, output_location, draft_sha, flow_run_id,
                triage_note: Columns to set at the same time (``KEEP`` leaves one unchanged).

        Returns:
            The updated job (its ``version`` is the caller's new fencing token).

        Raises:
            UnknownJob: no such job.
            StaleVersion: someone else changed the job since ``expected_version``.
            IllegalTransition: the edge, stop reason or a required fact is missing, or another live job
                already holds the page (``monitoring -> refresh_needed``).
        """
        to = JobState(to)
        reason = None if stop_reason is None else StopReason(stop_reason)
        changes = _field_changes(
            current_step=current_step,
            failure_reason=failure_reason,
            next_action=next_action,
            output_location=output_location,
            draft_sha=draft_sha,
            flow_run_id=flow_run_id,
            triage_note=triage_note,
        )
        with self._tx() as conn:
            row = self._lock_job(conn, job_id)
            _check_version(row, expected_version)
            check_transition(JobState(row["state"]), to, reason)
            self._check_facts(conn, job_id, to, changes.get("draft_sha", row["draft_sha"]))
            changes.update(state=to.value, stop_reason=None if reason is None else reason.value)
            if to in TERMINAL_STATES or to is JobState.monitoring:
                changes.update(lease_owner=None, lease_expires_at=None)
            try:
                self._cas(conn, job_id, expected_version, changes)
            except IntegrityError as exc:
                raise IllegalTransition(
                    f"{row['state']} -> {to} refused: another live job holds page {row['page_url']}"
                ) from exc
            return self._read_job(conn, job_id)

    @_reconnecting_settled(_update_settled)
    def update_job(
        self,
        job_id: str,
        *,
        expected_version: int,
        current_step: str | _Keep | None = KEEP,
        failure_reason: str | _Keep | None = KEEP,
        next_action: str | _Keep | None = KEEP,
        output_location: str | _Keep | None = KEEP,
        draft_sha: str | _Keep | None = KEEP,
        flow_run_id: str | _Keep | None = KEEP,
        triage_note: str | _Keep | None = KEEP,
    ) -> JobRecord:
        """Set job columns without a state change, by compare-and-set on the version.

        Raises:
            UnknownJob: no such job.
            StaleVersion: someone else changed the job since ``expected_version``.
            IllegalTransition: the draft hash of a job awaiting review or approved would change (re-draft
                through ``transition(..., JobState.drafted)`` instead).
        """
        changes = _field_changes(
            current_step=current_step,
            failure_reason=failure_reason,
            next_action=next_action,
            output_location=output_location,
            draft_sha=draft_sha,
            flow_run_id=flow_run_id,
            triage_note=triage_note,
        )
        with self._tx() as conn:
            row = self._lock_job(conn, job_id)
            _check_version(row, expected_version)
            frozen_draft = {
                JobState.awaiting_review,
                JobState.approved,
                JobState.published,
                JobState.monitoring,
            }
            if (
                "draft_sha" in changes
                and changes["draft_sha"] != row["draft_sha"]
                and JobState(row["state"]) in frozen_draft
            ):
                raise IllegalTransition(
                    f"job {job_id} is {row['state']}: its draft cannot change in place; re-draft instead"
                )
            self._cas(conn, job_id, expected_version, changes)
            return self._read_job(conn, job_id)

    # --------------------------------------------------------------------------------- leases

    @_reconnecting
    def acquire_lease(self, job_id: str, owner: str, ttl: timedelta) -> int:
        """Take (or renew) the job's lease; return the fencing token.

        Succeeds when the lease is free, expired or already ``owner``'s. Every acquisition bumps the job's
        version, so writes still carrying an earlier token fail with StaleVersion.

        Raises:
            UnknownJob: no such job.
            LeaseHeld: another owner's lease has not expired (``retry_after`` says for how long).
        """
        with self._tx() as conn:
            return self._acquire_lease(conn, job_id, owner, ttl)

    @_reconnecting
    def take_lease(self, job_id: str, owner: str, ttl: timedelta) -> JobRecord:
        """:meth:`acquire_lease`, returning the leased job (its ``version`` is the fencing token).

        One transaction instead of an acquisition and a read: a runner renews its lease before every step.

        Raises:
            UnknownJob: no such job.
            LeaseHeld: another owner's lease has not expired (``retry_after`` says for how long).
        """
        with self._tx() as conn:
            self._acquire_lease(conn, job_id, owner, ttl)
            return self._read_job(conn, job_id)

    def _acquire_lease(self, conn: Connection, job_id: str, owner: str, ttl: timedelta) -> int:
        if ttl <= timedelta(0):
            raise ValueError("lease ttl must be positive")
        now = self._now()
        row = self._lock_job(conn, job_id)
        holder, expires = row["lease_owner"], row["lease_expires_at"]
        if holder is not None and holder != owner and expires is not None and expires > now:
            raise LeaseHeld(
                f"job {job_id} is leased to {holder} until {expires.isoformat()}",
                retry_after=(expires - now).total_seconds(),
            )
        self._cas(conn, job_id, row["version"], {"lease_owner": owner, "lease_expires_at": now + ttl})
        return int(row["version"]) + 1

    @_reconnecting_settled(_release_settled)
    def release_lease(self, job_id: str, owner: str, fence: int) -> JobRecord:
        """Give the lease back (idempotent once released by this owner's current token).

        Raises:
            UnknownJob: no such job.
            StaleVersion: ``fence`` is not the job's current version, or ``owner`` does not hold the lease.
        """
        with self._tx() as conn:
            row = self._lock_job(conn, job_id)
            _check_version(row, fence)
            if row["lease_owner"] is None:
                return _job(row)
            if row["lease_owner"] != owner:
                raise StaleVersion(f"job {job_id} is leased to {row['lease_owner']}, not {owner}")
            self._cas(conn, job_id, fence, {"lease_owner": None, "lease_expires_at": None})
            return self._read_job(conn, job_id)

    @_reconnecting
    def check_fence(self, job_id: str, fence: int) -> JobRecord:
        """Return the job if ``fence`` is still its current version.

        Raises:
            UnknownJob: no such job.
            StaleVersion: the job moved on since the token was issued.
        """
        with self._tx(write=False) as conn:
            row = self._lock_job(conn, job_id)
            _check_version(row, fence)
            return _job(row)

    @_reconnecting
    def expired_leases(self, now: datetime | None = None) -> list[JobRecord]:
        """Jobs whose lease has expired (the sweeper's work list)."""
        now = now or self._now()
        jobs = schema.jobs.c
        query = (
            select(schema.jobs)
            .where(jobs.lease_owner.is_not(None), jobs.lease_expires_at <= now)
            .order_by(jobs.lease_expires_at)
        )
        with self._tx(write=False) as conn:
            return [_job(row._mapping) for row in conn.execute(query)]

    # ------------------------------------------------------------------------------- attempts

    @_reconnecting_settled(_attempt_settled, pin_clock=True)
    def record_attempt(
        self, job_id: str, step: str, error_class: str, message: str, *, fence: int | None = None
    ) -> int:
        """Persist one failed attempt of ``step``; return how many attempts it has now.

        Raises:
            UnknownJob: no such job.
            StaleVersion: ``fence`` is given and stale.
        """
        with self._tx() as conn:
            row = self._lock_job(conn, job_id)
            if fence is not None:
                _check_version(row, fence)
            number = self._attempt_count(conn, job_id, step) + 1
            conn.execute(
                schema.attempts.insert().values(
                    job_id=job_id,
                    step=step,
                    number=number,
                    error_class=error_class,
                    message=message[:4000],
                    at=self._now(),
                )
            )
            return number

    @_reconnecting
    def attempts(self, job_id: str, step: str) -> int:
        """How many failed attempts ``step`` of ``job_id`` has had (0 if none)."""
        with self._tx(write=False) as conn:
            return self._attempt_count(conn, job_id, step)

    @_reconnecting
    def attempt_history(self, job_id: str, step: str | None = None) -> list[AttemptRecord]:
        """The recorded attempts, oldest first."""
        table = schema.attempts.c
        query = (
            select(schema.attempts).where(table.job_id == job_id).order_by(table.at, table.step, table.number)
        )
        if step is not None:
            query = query.where(table.step == step)
        with self._tx(write=False) as conn:
            return [AttemptRecord.model_validate(dict(row._mapping)) for row in conn.execute(query)]

    # ---------------------------------------------------------------------------------- steps

    @_reconnecting_settled(_start_settled, pin_clock=True)
    def start_step(self, job_id: str, step: str, input_hash: str, *, fence: int | None = None) -> StepRecord:
        """Mark a step run as started (counting the attempt); a completed step is returned unchanged.

        Raises:
            UnknownJob: no such job.
            StaleVersion: ``fence`` is given and stale.
        """
        now = self._now()
        with self._tx() as conn:
            row = self._lock_job(conn, job_id)
            if fence is not None:
                _check_version(row, fence)
            key = {"job_id": job_id, "step": step, "input_hash": input_hash}
            inserted = _insert_step(
                conn,
                {
                    **key,
                    "status": StepStatus.running.value,
                    "attempts": 1,
                    "started_at": now,
                    "updated_at": now,
                },
            )
            if inserted is not None:
                return inserted
            current = self._read_step(conn, job_id, step, input_hash)
            if current.status is StepStatus.completed:
                return current
            restarted = _update_unfinished_step(
                conn,
                job_id,
                step,
                input_hash,
                {
                    "status": StepStatus.running.value,
                    "attempts": current.attempts + 1,
                    "error": None,
                    "started_at": now,
                    "updated_at": now,
                },
            )
            # The job's row lock keeps other writers of its steps out: the run is still there, unfinished.
            return restarted if restarted is not None else self._read_step(conn, job_id, step, input_hash)

    @_reconnecting
    def complete_step(
        self,
        job_id: str,
        step: str,
        input_hash: str,
        output_ref: Mapping[str, Any] | BaseModel | None = None,
        *,
        fence: int | None = None,
    ) -> StepRecord:
        """Record a step's completion. The first completion wins: a later one returns it unchanged.

        Raises:
            UnknownJob: no such job.
            StaleVersion: ``fence`` is given and stale.
        """
        now = self._now()
        output = None if output_ref is None else _json_object(output_ref)
        with self._tx() as conn:
            row = self._lock_job(conn, job_id)
            if fence is not None:
                _check_version(row, fence)
            values = {
                "status": StepStatus.completed.value,
                "output_ref": output,
                "error": None,
                "finished_at": now,
                "updated_at": now,
            }
            return self._finish_step(conn, job_id, step, input_hash, values, now)

    @_reconnecting
    def fail_step(
        self, job_id: str, step: str, input_hash: str, error: str, *, fence: int | None = None
    ) -> StepRecord:
        """Record that a step run failed (a completed step is returned unchanged).

        Raises:
            UnknownJob: no such job.
            StaleVersion: ``fence`` is given and stale.
        """
        now = self._now()
        with self._tx() as conn:
            row = self._lock_job(conn, job_id)
            if fence is not None:
                _check_version(row, fence)
            values = {
                "status": StepStatus.failed.value,
                "error": error[:4000],
                "finished_at": now,
                "updated_at": now,
            }
            return self._finish_step(conn, job_id, step, input_hash, values, now)

    def _finish_step(
        self,
        conn: Connection,
        job_id: str,
        step: str,
        input_hash: str,
        values: Mapping[str, Any],
        now: datetime,
    ) -> StepRecord:
        # Caller holds the job's row lock (every writer of a job's steps takes it first), so the step run
        # cannot change between these statements: update an unfinished run, else insert one, else the
        # completed run stays as it is (the first completion wins).
        updated = _update_unfinished_step(conn, job_id, step, input_hash, values)
        if updated is not None:
            return updated
        key = {"job_id": job_id, "step": step, "input_hash": input_hash}
        inserted = _insert_step(conn, {**key, **values, "attempts": 1, "started_at": now})
        if inserted is not None:
            return inserted
        return self._read_step(conn, job_id, step, input_hash)

    @_reconnecting
    def get_step(self, job_id: str, step: str, input_hash: str) -> StepRecord | None:
        """The step run for this input hash, or None if it never started."""
        with self._tx(write=False) as conn:
            row = conn.execute(_STEP, _step_params(job_id, step, input_hash)).first()
            return None if row is None else _step(row._mapping)

    @_reconnecting
    def list_steps(self, job_id: str) -> list[StepRecord]:
        """Every recorded step run of the job, oldest change first."""
        table = schema.steps.c
        query = select(schema.steps).where(table.job_id == job_id).order_by(table.updated_at, table.step)
        with self._tx(write=False) as conn:
            return [_step(row._mapping) for row in conn.execute(query)]

    # -------------------------------------------------------------------------------- effects

    @_reconnecting
    def get_effect(self, key: str) -> EffectRecord | None:
        """The effect with idempotency key ``key``, or None."""
        with self._tx(write=False) as conn:
            return self._find_effect(conn, key)

    @_reconnecting
    def list_effects(self, job_id: str) -> list[EffectRecord]:
        """The job's effects, oldest first."""
        table = schema.effects.c
        query = select(schema.effects).where(table.job_id == job_id).order_by(table.created_at, table.key)
        with self._tx(write=False) as conn:
            return [_effect(row._mapping) for row in conn.execute(query)]

    @_reconnecting
    def begin_effect(
        self,
        job_id: str,
        step: str,
        draft_sha: str,
        *,
        target: str,
        fence: int,
        request: Mapping[str, Any] | BaseModel | None = None,
    ) -> EffectRecord:
        """Write the intent of a side effect (status ``pending``) BEFORE making it.

        If the effect already exists it is returned as it is (a ``failed`` one goes back to ``pending``
        for a new try). ``request`` is recorded as ``{step}_request`` evidence in the same transaction.

        Raises:
            UnknownJob: no such job.
            StaleVersion: ``fence`` is stale.
        """
        key = effect_key(job_id, step, draft_sha)
        now = self._now()
        with self._tx() as conn:
            _check_version(self._lock_job(conn, job_id), fence)
            inserted = _insert_ignore(
                conn,
                schema.effects,
                {
                    "key": key,
                    "job_id": job_id,
                    "step": step,
                    "draft_sha": draft_sha,
                    "target": target,
                    "status": EffectStatus.pending.value,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            current = self._read_effect(conn, key)
            if not inserted and current.status is EffectStatus.failed:
                conn.execute(
                    update(schema.effects)
                    .where(schema.effects.c.key == key)
                    .values(status=EffectStatus.pending.value, error=None, updated_at=now)
                )
                current = self._read_effect(conn, key)
            if (inserted or current.status is EffectStatus.pending) and request is not None:
                self._append(conn, job_id, f"{step}_request", key, _json_object(request))
            return current

    @_reconnecting
    def complete_effect(
        self,
        key: str,
        *,
        revision: str,
        fence: int,
        status: EffectStatus = EffectStatus.applied,
        response: Mapping[str, Any] | BaseModel | None = None,
    ) -> EffectRecord:
        """Record that the side effect happened (``applied``) or was found in place (``reconciled``).

        Completing an effect that is already done returns it unchanged (the first completion wins).
        ``response`` is recorded as ``{step}_response`` evidence in the same transaction.

        Raises:
            KeyError: no effect with this key (write the intent first).
            StaleVersion: ``fence`` is stale.
        """
        status = EffectStatus(status)
        if status not in {EffectStatus.applied, EffectStatus.reconciled}:
            raise ValueError(f"complete_effect takes applied or reconciled, not {status}")
        now = self._now()
        with self._tx() as conn:
            current = self._locked_effect(conn, key, fence)
            if current.done:
                return current
            conn.execute(
                update(schema.effects)
                .where(schema.effects.c.key == key)
                .values(status=status.value, revision=revision, error=None, completed_at=now, updated_at=now)
            )
            if response is not None:
                self._append(conn, current.job_id, f"{current.step}_response", key, _json_object(response))
            return self._read_effect(conn, key)

    @_reconnecting
    def fail_effect(self, key: str, error: str, *, fence: int) -> EffectRecord:
        """Record that the side effect was refused permanently (a done effect is returned unchanged).

        Raises:
            KeyError: no effect with this key.
            StaleVersion: ``fence`` is stale.
        """
        now = self._now()
        with self._tx() as conn:
            current = self._locked_effect(conn, key, fence)
            if current.done:
                return current
            conn.execute(
                update(schema.effects)
                .where(schema.effects.c.key == key)
                .values(status=EffectStatus.failed.value, error=error[:4000], updated_at=now)
            )
            return self._read_effect(conn, key)

    # ------------------------------------------------------------------------------ approvals

    @_reconnecting
    def request_approval(
        self, job_id: str, draft_sha: str, *, expires_at: datetime | None = None
    ) -> ApprovalRecord:
        """Record that a decision on this draft was asked for (idempotent: returns an existing request).

        Raises:
            UnknownJob: no such job.
            ApprovalRefused: ``draft_sha`` is not the job's current draft.
        """
        now = self._now()
        with self._tx() as conn:
            row = self._lock_job(conn, job_id)
            if row["draft_sha"] != draft_sha:
                raise ApprovalRefused(
                    f"draft {draft_sha} is not job {job_id}'s current draft ({row['draft_sha']})"
                )
            _insert_ignore(
                conn,
                schema.approvals,
                {"job_id": job_id, "draft_sha": draft_sha, "requested_at": now, "expires_at": expires_at},
            )
            return self._read_approval(conn, job_id, draft_sha)

    @_reconnecting
    def decide(
        self,
        job_id: str,
        draft_sha: str,
        decision: Decision,
        *,
        reviewer: str,
        channel: Channel,
        notes: str | None = None,
    ) -> ApprovalRecord:
        """Record a reviewer's decision on exactly this draft. The first decision wins.

        Repeating the recorded decision is a no-op (the first record is returned). The decision is also
        appended as ``approval`` evidence in the same transaction.

        Raises:
            UnknownJob: no such job.
            ApprovalRefused: a different decision is already recorded, the request expired, the job is
                terminal, or ``draft_sha`` is not the job's current draft.
        """
        decision = Decision(decision)
        channel = Channel(channel)
        now = self._now()
        with self._tx() as conn:
            row = self._lock_job(conn, job_id)
            existing = self._find_approval(conn, job_id, draft_sha)
            if existing is not None and existing.decision is not None:
                if existing.decision is decision:
                    return existing
                raise ApprovalRefused(
                    f"job {job_id} draft {draft_sha[:12]} was already decided: {existing.decision} by "
                    f"{existing.reviewer} via {existing.channel} at {existing.decided_at}; "
                    f"refusing {decision}"
                )
            if JobState(row["state"]) in TERMINAL_STATES:
                raise ApprovalRefused(
                    f"job {job_id} is {row['state']} ({row['stop_reason']}): no decision taken"
                )
            if row["draft_sha"] != draft_sha:
                raise ApprovalRefused(
                    f"draft {draft_sha[:12]} is not job {job_id}'s current draft "
                    f"({row['draft_sha']}): re-review"
                )
            if existing is not None and existing.expires_at is not None and now >= existing.expires_at:
                raise ApprovalRefused(
                    f"the approval request for job {job_id} expired at {existing.expires_at}: "
                    "never auto-approved"
                )
            if existing is None:
                _insert_ignore(
                    conn, schema.approvals, {"job_id": job_id, "draft_sha": draft_sha, "requested_at": now}
                )
            conn.execute(
                update(schema.approvals)
                .where(
                    schema.approvals.c.job_id == job_id,
                    schema.approvals.c.draft_sha == draft_sha,
                    schema.approvals.c.decision.is_(None),
                )
                .values(
                    decision=decision.value,
                    reviewer=reviewer,
                    notes=notes,
                    channel=channel.value,
                    decided_at=now,
                )
            )
            record = self._read_approval(conn, job_id, draft_sha)
            payload = {
                "draft_sha": draft_sha,
                "decision": decision.value,
                "reviewer": reviewer,
                "channel": channel.value,
                "notes": notes,
            }
            self._append(conn, job_id, "approval", draft_sha, payload)
            return record

    @_reconnecting
    def get_approval(self, job_id: str, draft_sha: str) -> ApprovalRecord | None:
        """The approval request/decision for this draft, or None."""
        with self._tx(write=False) as conn:
            return self._find_approval(conn, job_id, draft_sha)

    def is_approved(self, job_id: str, draft_sha: str) -> bool:
        """Tell whether an ``approve`` decision is recorded for exactly this draft."""
        record = self.get_approval(job_id, draft_sha)
        return record is not None and record.decision is Decision.approve

    @_reconnecting
    def expired_approvals(self, now: datetime | None = None) -> list[ApprovalRecord]:
        """Undecided requests past their deadline for jobs still awaiting review of that very draft.

        The sweeper moves their jobs to ``approval_expired``; nothing is ever approved by a timeout.
        """
        now = now or self._now()
        table, jobs = schema.approvals.c, schema.jobs.c
        query = (
            select(schema.approvals)
            .join(schema.jobs, jobs.job_id == table.job_id)
            .where(table.decision.is_(None), table.expires_at.is_not(None), table.expires_at <= now)
            # Only the request for the draft the job is still waiting on; superseded drafts are history.
            .where(jobs.state == JobState.awaiting_review.value, jobs.draft_sha == table.draft_sha)
            .order_by(table.expires_at)
        )
        with self._tx(write=False) as conn:
            return [_approval(row._mapping) for row in conn.execute(query)]

    # ------------------------------------------------------------------------------- evidence

    @_reconnecting
    def append_evidence(
        self,
        job_id: str,
        kind: str,
        payload: Mapping[str, Any] | BaseModel,
        *,
        check: str | None = None,
    ) -> EvidenceRecord:
        """Append a content-addressed record to the job's evidence chain.

        The same check (``kind`` + ``check``, default ``check=kind``) observed again with an identical
        payload is not appended twice: the newest record for that check is returned instead. A changed
        payload is appended and supersedes the older record (see :meth:`latest_evidence`); nothing is
        ever rewritten, so the chain stays verifiable.

        Raises:
            UnknownJob: no such job.
            TypeError, ValueError: the payload is not JSON-compatible.
        """
        data = _json_object(payload)
        with self._tx() as conn:
            self._lock_job(conn, job_id)
            return self._append(conn, job_id, kind, check or kind, data)

    @_reconnecting
    def evidence(self, job_id: str, kind: str | None = None) -> list[EvidenceRecord]:
        """The job's evidence in chain order, optionally of one kind."""
        table = schema.evidence.c
        query = select(schema.evidence).where(table.job_id == job_id).order_by(table.seq)
        if kind is not None:
            query = query.where(table.kind == kind)
        with self._tx(write=False) as conn:
            return [_evidence(row._mapping) for row in conn.execute(query)]

    @_reconnecting
    def latest_evidence(self, job_id: str, kind: str, check: str | None = None) -> EvidenceRecord | None:
        """The newest record for a check (the one that replaces older observations), or None."""
        with self._tx(write=False) as conn:
            return self._latest(conn, job_id, kind, check or kind)

    @_reconnecting
    def verify_chain(self, job_id: str) -> ChainVerification:
        """Recompute every payload hash, record hash and link of the job's chain."""
        with self._tx(write=False) as conn:
            rows = conn.execute(
                select(schema.evidence)
                .where(schema.evidence.c.job_id == job_id)
                .order_by(schema.evidence.c.seq)
            ).all()
        prev = GENESIS
        for index, raw in enumerate(rows):
            row = raw._mapping
            where = f"record {index} (seq {row['seq']}, {row['kind']})"
            problem = None
            if sha256_text(row["payload"]) != row["payload_sha"]:
                problem = f"{where}: payload does not match its hash"
            elif row["prev_hash"] != prev:
                problem = f"{where}: links to {row['prev_hash'][:12]}, expected {prev[:12]}"
            elif row["hash"] != record_hash(
                job_id=job_id,
                kind=row["kind"],
                check=row["check_key"],
                payload_sha=row["payload_sha"],
                prev_hash=row["prev_hash"],
            ):
                problem = f"{where}: record hash does not match its content"
            if problem is not None:
                return ChainVerification(
                    job_id=job_id, ok=False, records=len(rows), head=None, problem=problem
                )
            prev = row["hash"]
        head = rows[-1]._mapping["hash"] if rows else None
        return ChainVerification(job_id=job_id, ok=True, records=len(rows), head=head)

    # -------------------------------------------------------------------------------- private

    def _append(
        self, conn: Connection, job_id: str, kind: str, check: str, data: dict[str, Any]
    ) -> EvidenceRecord:
        # Caller holds the job's row lock, so the chain head cannot move under us.
        text = canonical_json(data)
        payload_sha = sha256_text(text)
        latest = self._latest(conn, job_id, kind, check)
        if latest is not None and latest.payload_sha == payload_sha:
            return latest
        head = conn.execute(_CHAIN_HEAD, {"p_job_id": job_id}).scalar()
        prev = head or GENESIS
        digest = record_hash(job_id=job_id, kind=kind, check=check, payload_sha=payload_sha, prev_hash=prev)
        row = conn.execute(
            _INSERT_EVIDENCE,
            {
                "job_id": job_id,
                "kind": kind,
                "check_key": check,
                "payload": text,
                "payload_sha": payload_sha,
                "prev_hash": prev,
                "hash": digest,
                "created_at": self._now(),
            },
        ).one()
        return _evidence(row._mapping)

    def _latest(self, conn: Connection, job_id: str, kind: str, check: str) -> EvidenceRecord | None:
        row = conn.execute(_LATEST_EVIDENCE, {"p_job_id": job_id, "p_kind": kind, "p_check": check}).first()
        return None if row is None else _evidence(row._mapping)

    def _check_facts(self, conn: Connection, job_id: str, to: JobState, draft_sha: str | None) -> None:
        if to is JobState.awaiting_review and not draft_sha:
            raise IllegalTransition(f"job {job_id} cannot await review without a draft hash")
        # A reviewer who asks for changes ends the job like a rejection (the draft is not published; the
        # notes say what to change): without this the job would wait on a decided request forever.
        needed = {
            JobState.approved: (Decision.approve,),
            JobState.rejected: (Decision.reject, Decision.request_changes),
        }.get(to)
        if needed is not None:
            record = None if draft_sha is None else self._find_approval(conn, job_id, draft_sha)
            if record is None or record.decision not in needed:
                have = "nothing" if record is None else record.decision
                wanted = "' or '".join(needed)
                raise IllegalTransition(
                    f"job {job_id} -> {to} needs a recorded '{wanted}' for draft {draft_sha}; "
                    f"the ledger has {have}"
                )
        if to is JobState.approval_expired and draft_sha is not None:
            record = self._find_approval(conn, job_id, draft_sha)
            if record is not None and record.decision is not None:
                raise IllegalTransition(
                    f"job {job_id}: draft {draft_sha[:12]} was already decided ({record.decision}): no expiry"
                )
        if to is JobState.published:
            effect = (
                None
                if draft_sha is None
                else self._find_effect(conn, effect_key(job_id, PUBLISH_STEP, draft_sha))
            )
            if effect is None or not effect.done:
                have = "nothing" if effect is None else effect.status
                raise IllegalTransition(
                    f"job {job_id} -> published needs the publish effect of draft {draft_sha} done; "
                    f"it is {have}"
                )

    def _cas(self, conn: Connection, job_id: str, expected_version: int, changes: Mapping[str, Any]) -> None:
        values = {**changes, "version": expected_version + 1, "updated_at": self._now()}
        params = {f"v_{name}": value for name, value in values.items()}
        result = conn.execute(
            _job_cas(tuple(values)), {**params, "p_job_id": job_id, "p_version": expected_version}
        )
        if result.rowcount != 1:
            raise StaleVersion(f"job {job_id} moved past version {expected_version}")

    @staticmethod
    def _lock_job(conn: Connection, job_id: str) -> dict[str, Any]:
        row = conn.execute(_LOCK_JOB, {"p_job_id": job_id}).first()
        if row is None:
            raise UnknownJob(f"no job {job_id!r}")
        return dict(row._mapping)

    @staticmethod
    def _find_job(conn: Connection, job_id: str) -> JobRecord | None:
        row = conn.execute(_FIND_JOB, {"p_job_id": job_id}).first()
        return None if row is None else _job(row._mapping)

    def _read_job(self, conn: Connection, job_id: str) -> JobRecord:
        job = self._find_job(conn, job_id)
        if job is None:
            raise UnknownJob(f"no job {job_id!r}")
        return job

    @staticmethod
    def _live_job(conn: Connection, page_key: str) -> JobRecord | None:
        row = conn.execute(
            select(schema.jobs).where(
                schema.jobs.c.page_key == page_key,
                schema.jobs.c.state.in_([s.value for s in LIVE_STATES]),
            )
        ).first()
        return None if row is None else _job(row._mapping)

    @staticmethod
    def _attempt_count(conn: Connection, job_id: str, step: str) -> int:
        value = conn.execute(_LAST_ATTEMPT, {"p_job_id": job_id, "p_step": step}).first()
        return 0 if value is None else int(value[0])

    @staticmethod
    def _read_step(conn: Connection, job_id: str, step: str, input_hash: str) -> StepRecord:
        row = conn.execute(_STEP, _step_params(job_id, step, input_hash)).one()
        return _step(row._mapping)

    def _locked_effect(self, conn: Connection, key: str, fence: int) -> EffectRecord:
        found = self._find_effect(conn, key)
        if found is None:
            raise KeyError(f"no effect {key!r}: write the intent before the side effect")
        _check_version(self._lock_job(conn, found.job_id), fence)
        # Re-read under the job's lock: another worker may have completed it meanwhile.
        return self._read_effect(conn, key)

    @staticmethod
    def _find_effect(conn: Connection, key: str) -> EffectRecord | None:
        row = conn.execute(_FIND_EFFECT, {"p_key": key}).first()
        return None if row is None else _effect(row._mapping)

    def _read_effect(self, conn: Connection, key: str) -> EffectRecord:
        effect = self._find_effect(conn, key)
        if effect is None:
            raise KeyError(key)
        return effect

    @staticmethod
    def _find_approval(conn: Connection, job_id: str, draft_sha: str) -> ApprovalRecord | None:
        row = conn.execute(_FIND_APPROVAL, {"p_job_id": job_id, "p_draft_sha": draft_sha}).first()
        return None if row is None else _approval(row._mapping)

    def _read_approval(self, conn: Connection, job_id: str, draft_sha: str) -> ApprovalRecord:
        record = self._find_approval(conn, job_id, draft_sha)
        if record is None:
            raise KeyError((job_id, draft_sha))
        return record


def _check_version(row: Mapping[str, Any], expected: int) -> None:
    if row["version"] != expected:
        raise StaleVersion(
            f"job {row['job_id']} is at version {row['version']} ({row['state']}), not {expected}: "
            "someone else moved it (re-read the job; a lost lease means stop)"
        )


def _field_changes(**fields: str | _Keep | None) -> dict[str, Any]:
    unknown = set(fields) - set(_JOB_FIELDS)
    if unknown:
        raise TypeError(f"unknown job fields: {sorted(unknown)}")
    return {name: value for name, value in fields.items() if not isinstance(value, _Keep)}
