"""The ledger: source of truth for jobs, steps, attempts, side effects, approvals and evidence.

Usage::

    ledger = Ledger.open()                      # Settings.ledger_url; migrates; safe in parallel
    job = ledger.submit_job(site, url, goal="refresh", trigger=fingerprint).job
    fence = ledger.acquire_lease(job.job_id, owner="worker-1", ttl=timedelta(minutes=5))
    job = ledger.transition(job.job_id, JobState.compared, expected_version=fence)
"""

from typing import TYPE_CHECKING

from sitesteward.lazy import lazy_attributes
from sitesteward.ledger.clock import Clock, ManualClock, SystemClock
from sitesteward.ledger.evidence import GENESIS, canonical_json
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
    FORWARD_ORDER,
    LIVE_STATES,
    TERMINAL_STATES,
    TERMINAL_STOP_REASONS,
    TRANSITIONS,
    JobState,
    StopReason,
    check_transition,
    is_live,
    is_terminal,
)

if TYPE_CHECKING:
    from sitesteward.ledger.store import (
        KEEP,
        PUBLISH_STEP,
        ApprovalRefused,
        LeaseHeld,
        Ledger,
        LedgerUnavailable,
        UnknownJob,
        create_ledger_engine,
        effect_key,
        job_id_for,
        page_key_for,
    )

#: Loaded on first use: the store brings SQLAlchemy (~0.2 s), which an audit never needs.
__getattr__ = lazy_attributes(
    __name__,
    dict.fromkeys(
        [
            "KEEP",
            "PUBLISH_STEP",
            "ApprovalRefused",
            "LeaseHeld",
            "Ledger",
            "LedgerUnavailable",
            "UnknownJob",
            "create_ledger_engine",
            "effect_key",
            "job_id_for",
            "page_key_for",
        ],
        "sitesteward.ledger.store",
    ),
)


__all__ = [
    "FORWARD_ORDER",
    "GENESIS",
    "KEEP",
    "LIVE_STATES",
    "PUBLISH_STEP",
    "TERMINAL_STATES",
    "TERMINAL_STOP_REASONS",
    "TRANSITIONS",
    "ApprovalRecord",
    "ApprovalRefused",
    "AttemptRecord",
    "ChainVerification",
    "Channel",
    "Clock",
    "Decision",
    "EffectRecord",
    "EffectStatus",
    "EvidenceRecord",
    "JobRecord",
    "JobState",
    "LeaseHeld",
    "Ledger",
    "LedgerUnavailable",
    "ManualClock",
    "StepRecord",
    "StepStatus",
    "StopReason",
    "Submission",
    "SystemClock",
    "UnknownJob",
    "canonical_json",
    "check_transition",
    "create_ledger_engine",
    "effect_key",
    "is_live",
    "is_terminal",
    "job_id_for",
    "page_key_for",
]
