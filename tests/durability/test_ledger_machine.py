"""A Hypothesis state machine drives a real SQLite ledger through random sequences of operations.

Each rule predicts the ledger's answer from a small in-memory model (what must be refused, with which
error, and what must change), calls the ledger, and updates the model. Invariants are checked after every
step, against the database itself: the job rows, steps, attempts, effects and approvals equal the model;
every observed state change is an edge of :data:`sitesteward.ledger.states.TRANSITIONS`; a terminal job
has a fitting stop reason; at most one live job per page; a publish effect is done only for a draft
approved (before the write) by exactly that hash, and the page file holds the edit at most once; every
evidence chain verifies. Writes with stale fencing tokens are predicted to fail with ``StaleVersion``; the
model does not change then, so the invariants also prove they changed nothing.

Publishing goes through the real protocol (:func:`sitesteward.publish.publish_once`) into a Markdown
content directory, so the approval gate and the intent/fence checks are the ones production uses. Raw
``begin/complete/fail_effect`` calls on a second effect kind exercise the effect fencing directly.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from sitesteward.errors import IllegalTransition, PolicyViolation, StaleVersion
from sitesteward.ledger import (
    FORWARD_ORDER,
    KEEP,
    LIVE_STATES,
    PUBLISH_STEP,
    TERMINAL_STATES,
    TERMINAL_STOP_REASONS,
    TRANSITIONS,
    ApprovalRefused,
    Channel,
    Decision,
    EffectStatus,
    JobState,
    LeaseHeld,
    Ledger,
    ManualClock,
    StepStatus,
    StopReason,
    Submission,
    effect_key,
    job_id_for,
)
from sitesteward.ledger.states import INITIAL_STATES
from sitesteward.models import Draft, Edit
from sitesteward.publish import EditConflict, MarkdownContentTarget, draft_hash, publish_once
from sitesteward.sweep import sweep_ledger

T = TypeVar("T")

SITE = "machine"
BASE_URL = "https://example.test/"
PAGES = ("https://example.test/alpha/", "https://example.test/beta/")
TRIGGERS = ("t1", "t2", "t3")
OWNERS = ("w1", "w2", "w3")
STEPS = ("compare", "draft")
INPUT_HASHES = ("h1", "h2")
NOTE_KINDS = ("note_a", "note_b")
OLD = "As of 2019, 42% of teams use static sites."
NEW = ("As of 2025, 57% of teams use static sites.", "As of 2025, 61% of teams use static sites.")
IDLE_AFTER = timedelta(minutes=30)
#: Version choices: the job's current version, its owner's last fencing token, or an older one.
FENCES = ("current", "holder", "stale")


def _page_file(page: str) -> str:
    return page.rstrip("/").rsplit("/", 1)[1] + ".md"


def _draft(page: str, variant: int) -> Draft:
    edit = Edit(old=OLD, new=NEW[variant], finding="stale_date", justification="the survey moved on")
    return Draft(page_url=page, edits=[edit], drafter="offline", prompt_version="machine-1")


DRAFTS: dict[str, tuple[Draft, Draft]] = {page: (_draft(page, 0), _draft(page, 1)) for page in PAGES}
SHAS: dict[str, tuple[str, str]] = {page: (draft_hash(a), draft_hash(b)) for page, (a, b) in DRAFTS.items()}


@dataclass
class JobModel:
    job_id: str
    page: str
    state: JobState
    version: int
    updated_at: datetime
    draft_sha: str | None = None
    stop_reason: StopReason | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None


@dataclass
class ApprovalModel:
    requested_at: datetime
    expires_at: datetime | None
    decision: Decision | None = None
    decided_at: datetime | None = None


@dataclass
class EffectModel:
    job_id: str
    step: str
    draft_sha: str
    status: EffectStatus
    completed_at: datetime | None = None


@dataclass
class StepModel:
    status: StepStatus
    attempts: int
    output: dict[str, Any] | None = None


@dataclass
class Model:
    jobs: dict[str, JobModel] = field(default_factory=dict)
    approvals: dict[tuple[str, str], ApprovalModel] = field(default_factory=dict)
    effects: dict[str, EffectModel] = field(default_factory=dict)
    steps: dict[tuple[str, str, str], StepModel] = field(default_factory=dict)
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    fences: dict[tuple[str, str], int] = field(default_factory=dict)
    notes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    #: Which edit each page file holds: None for the old text, else the index into NEW.
    page_text: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(PAGES))

    def live_job(self, page: str, other_than: str | None = None) -> JobModel | None:
        for job in self.jobs.values():
            if job.page == page and job.state in LIVE_STATES and job.job_id != other_than:
                return job
        return None


class LedgerMachine(RuleBasedStateMachine):
    """Random operations on one ledger, each checked against the model's prediction."""

    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        # tmpfs when there is one: the machine commits thousands of tiny transactions, and fsync on a
        # disk would make up most of its run time without testing anything more.
        shm = Path("/dev/shm")
        self.tmp = Path(tempfile.mkdtemp(prefix="ledger-machine-", dir=shm if shm.is_dir() else None))
        self.clock = ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
        self.ledger = Ledger.open(f"sqlite:///{self.tmp / 'ledger.sqlite'}", clock=self.clock)
        self.content = self.tmp / "site"
        self.content.mkdir()
        for page in PAGES:
            (self.content / _page_file(page)).write_text(f"# {page}\n\n{OLD}\n", encoding="utf-8")
        self.publisher = MarkdownContentTarget(content_root=self.content, base_url=BASE_URL)
        self.model = Model()
        self.seen: dict[str, JobState] = {}  # the state each job had at the last invariant check
        self.dirty: set[str] = set()

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---------------------------------------------------------------------------------- helpers

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def _fence(self, job: JobModel, choice: str, owner: str) -> int:
        if choice == "holder":
            return self.model.fences.get((job.job_id, owner), job.version)
        if choice == "stale":
            return max(1, job.version - 1 - job.version % 3)
        return job.version

    def _expect(self, error: type[Exception] | None, call: Callable[[], T]) -> T | None:
        """Call the ledger; it must raise ``error`` (then nothing may change) or succeed when None."""
        event(f"refused: {error.__name__}" if error else "accepted")
        if error is None:
            return call()
        with pytest.raises(error):
            call()
        return None

    def _bump(self, job: JobModel, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(job, name, value)
        job.version += 1
        job.updated_at = self.now

    def _sha(self, job: JobModel, variant: int | None) -> str | None:
        return None if variant is None else SHAS[job.page][variant]

    # --------------------------------------------------------------------------------- job rules

    @initialize(target=jobs)
    def first_job(self) -> str:
        return self._submit(0, 0, JobState.planned) or ""

    @rule(
        target=jobs,
        page=st.integers(0, len(PAGES) - 1),
        trigger=st.integers(0, len(TRIGGERS) - 1),
        initial=st.sampled_from([JobState.planned, JobState.refresh_needed, JobState.compared]),
    )
    def submit(self, page: int, trigger: int, initial: JobState) -> Any:
        job_id = self._submit(page, trigger, initial)
        return multiple() if job_id is None else job_id

    def _submit(self, page_index: int, trigger_index: int, initial: JobState) -> str | None:
        page, trigger = PAGES[page_index], TRIGGERS[trigger_index]
        job_id = job_id_for(SITE, page, trigger)

        def call() -> Submission:
            return self.ledger.submit_job(SITE, page, goal="machine", trigger=trigger, initial_state=initial)

        if initial not in INITIAL_STATES:
            self._expect(IllegalTransition, call)
            return None
        existing, live = self.model.jobs.get(job_id), self.model.live_job(page)
        submission = call()
        if existing is not None:
            assert not submission.created and submission.job.job_id == job_id
        elif live is not None:
            assert submission.duplicate_of_live and submission.job.job_id == live.job_id
        else:
            assert submission.created and submission.job.state is initial and submission.job.version == 1
            self.model.jobs[job_id] = JobModel(job_id, page, initial, 1, self.now)
        self.dirty.add(submission.job.job_id)
        return submission.job.job_id

    @rule(
        job_id=jobs,
        to=st.sampled_from(list(JobState)),
        fence=st.sampled_from(FENCES),
        owner=st.sampled_from(OWNERS),
        reason=st.one_of(st.just("fit"), st.sampled_from([None, *StopReason])),
        draft=st.sampled_from([KEEP, None, 0, 1]),
    )
    def transition(self, job_id: str, to: JobState, fence: str, owner: str, reason: Any, draft: Any) -> None:
        job = self.model.jobs[job_id]
        if reason == "fit":
            reason = sorted(TERMINAL_STOP_REASONS[to])[0] if to in TERMINAL_STATES else None
        draft_sha = draft if draft is KEEP else self._sha(job, draft)
        self._transition(job, to, self._fence(job, fence, owner), reason, draft_sha)

    @rule(
        job_id=jobs,
        pick=st.integers(0, 9),
        fence=st.sampled_from(FENCES),
        owner=st.sampled_from(OWNERS),
        draft=st.sampled_from([KEEP, 0, 1]),
    )
    def transition_along_an_edge(self, job_id: str, pick: int, fence: str, owner: str, draft: Any) -> None:
        """An allowed edge with a fitting stop reason (random targets are mostly refused at once)."""
        job = self.model.jobs[job_id]
        # Mostly the non-terminal edges: a job that stops early leaves little for the other rules to do.
        onward = sorted(TRANSITIONS[job.state] - TERMINAL_STATES)
        edges = onward if onward and pick < 8 else sorted(TRANSITIONS[job.state])
        if not edges:
            return
        to = edges[pick % len(edges)]
        reasons = sorted(TERMINAL_STOP_REASONS.get(to, ()))
        reason = reasons[pick % len(reasons)] if reasons else None
        draft_sha = draft if draft is KEEP else self._sha(job, draft)
        self._transition(job, to, self._fence(job, fence, owner), reason, draft_sha)

    @rule(
        job_id=jobs,
        steps=st.integers(1, 9),
        draft=st.integers(0, 1),
        hours=st.sampled_from([1, 72]),
    )
    def step_forward(self, job_id: str, steps: int, draft: int, hours: int) -> None:
        """Move forward as a well-behaved worker would, recording the facts each edge needs first.

        Like the flow, the worker parks once it asked for a review: a later call plays the reviewer (who
        approves unless a decision is already recorded) and the worker that continues. A recorded reject
        stops the job; changes requested send it back to drafting with the other draft.
        """
        job = self.model.jobs[job_id]
        for taken in range(steps):
            if job.state not in FORWARD_ORDER or job.state is JobState.monitoring:
                return
            target = FORWARD_ORDER[FORWARD_ORDER.index(job.state) + 1]
            sha: Any = KEEP
            reason = None
            if target is JobState.drafted:
                sha = SHAS[job.page][draft]
            elif target is JobState.awaiting_review and job.draft_sha is not None:
                self._request(job, job.draft_sha, timedelta(hours=hours))
            elif target is JobState.approved and job.draft_sha is not None:
                if taken:
                    return  # parked: the reviewer's decision comes in a later call
                approval = self.model.approvals.get((job.job_id, job.draft_sha))
                decision = Decision.approve if approval is None else approval.decision or Decision.approve
                if decision is Decision.reject:
                    target, reason = JobState.rejected, StopReason.rejected
                elif decision is Decision.request_changes:
                    target, sha = JobState.drafted, SHAS[job.page][1 - SHAS[job.page].index(job.draft_sha)]
                else:
                    self._decide(job, job.draft_sha, Decision.approve)
            elif target is JobState.published and job.draft_sha is not None:
                self._publish(job, job.draft_sha, job.version)
            if not self._transition(job, target, job.version, reason, sha):
                return

    def _transition(
        self, job: JobModel, to: JobState, version: int, reason: StopReason | None, draft_sha: Any
    ) -> bool:
        new_draft = job.draft_sha if draft_sha is KEEP else draft_sha
        error: type[Exception] | None = None
        if version != job.version:
            error = StaleVersion
        elif (
            to not in TRANSITIONS[job.state]
            or (to in TERMINAL_STATES and reason not in TERMINAL_STOP_REASONS[to])
            or (to not in TERMINAL_STATES and reason is not None)
            or not self._facts_hold(job, to, new_draft)
            or (
                to in LIVE_STATES
                and job.state not in LIVE_STATES
                and self.model.live_job(job.page, job.job_id)
            )
        ):
            error = IllegalTransition
        self.dirty.add(job.job_id)
        record = self._expect(
            error,
            lambda: self.ledger.transition(
                job.job_id, to, expected_version=version, stop_reason=reason, draft_sha=draft_sha
            ),
        )
        if record is None:
            return False
        before = job.state
        lease = {"lease_owner": None, "lease_expires_at": None}
        cleared = lease if to in TERMINAL_STATES or to is JobState.monitoring else {}
        self._bump(job, state=to, stop_reason=reason, draft_sha=new_draft, **cleared)
        assert record.version == job.version and record.state is to
        assert to in TRANSITIONS[self.seen.get(job.job_id, before)], f"{before} -> {to} is not an edge"
        self.seen[job.job_id] = to
        event(f"reached {to}")
        return True

    def _facts_hold(self, job: JobModel, to: JobState, draft: str | None) -> bool:
        approval = None if draft is None else self.model.approvals.get((job.job_id, draft))
        decision = None if approval is None else approval.decision
        if to is JobState.awaiting_review:
            return bool(draft)
        if to is JobState.approved:
            return decision is Decision.approve
        if to is JobState.rejected:
            return decision is Decision.reject
        if to is JobState.approval_expired:
            return decision is None
        if to is JobState.published:
            effect = (
                None if draft is None else self.model.effects.get(effect_key(job.job_id, PUBLISH_STEP, draft))
            )
            return effect is not None and effect.status in {EffectStatus.applied, EffectStatus.reconciled}
        return True

    @rule(
        job_id=jobs,
        fence=st.sampled_from(FENCES),
        owner=st.sampled_from(OWNERS),
        draft=st.sampled_from([KEEP, 0, 1]),
    )
    def update_draft(self, job_id: str, fence: str, owner: str, draft: Any) -> None:
        job = self.model.jobs[job_id]
        version = self._fence(job, fence, owner)
        sha = draft if draft is KEEP else self._sha(job, draft)
        frozen = {JobState.awaiting_review, JobState.approved, JobState.published, JobState.monitoring}
        error: type[Exception] | None = None
        if version != job.version:
            error = StaleVersion
        elif sha is not KEEP and sha != job.draft_sha and job.state in frozen:
            error = IllegalTransition
        self.dirty.add(job_id)
        if self._expect(
            error, lambda: self.ledger.update_job(job_id, expected_version=version, draft_sha=sha)
        ):
            self._bump(job, draft_sha=job.draft_sha if sha is KEEP else sha)

    # ------------------------------------------------------------------------------- lease rules

    @rule(job_id=jobs, owner=st.sampled_from(OWNERS), ttl=st.sampled_from([1, 5, 30]))
    def acquire_lease(self, job_id: str, owner: str, ttl: int) -> None:
        job = self.model.jobs[job_id]
        held = (
            job.lease_owner is not None
            and job.lease_owner != owner
            and job.lease_expires_at is not None
            and job.lease_expires_at > self.now
        )
        self.dirty.add(job_id)
        fence = self._expect(
            LeaseHeld if held else None,
            lambda: self.ledger.acquire_lease(job_id, owner, timedelta(seconds=ttl)),
        )
        if fence is not None:
            self._bump(job, lease_owner=owner, lease_expires_at=self.now + timedelta(seconds=ttl))
            assert fence == job.version
            self.model.fences[(job_id, owner)] = fence

    @rule(job_id=jobs, owner=st.sampled_from(OWNERS), fence=st.sampled_from(FENCES))
    def release_lease(self, job_id: str, owner: str, fence: str) -> None:
        job = self.model.jobs[job_id]
        token = self._fence(job, fence, owner)
        stale = token != job.version or (job.lease_owner is not None and job.lease_owner != owner)
        self.dirty.add(job_id)
        released = self._expect(
            StaleVersion if stale else None, lambda: self.ledger.release_lease(job_id, owner, token)
        )
        if released is not None and job.lease_owner is not None:
            self._bump(job, lease_owner=None, lease_expires_at=None)

    @rule(seconds=st.sampled_from([1, 2, 6, 31, 1800, 3600, 86_400]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(timedelta(seconds=seconds))

    # ------------------------------------------------------------------------ steps and attempts

    @rule(
        job_id=jobs,
        op=st.sampled_from(["start", "complete", "fail"]),
        step=st.sampled_from(STEPS),
        input_hash=st.sampled_from(INPUT_HASHES),
        fence=st.sampled_from([None, *FENCES]),
        owner=st.sampled_from(OWNERS),
    )
    def step_op(
        self, job_id: str, op: str, step: str, input_hash: str, fence: str | None, owner: str
    ) -> None:
        job = self.model.jobs[job_id]
        token = None if fence is None else self._fence(job, fence, owner)
        key = (job_id, step, input_hash)
        output = {"op": op, "at": self.now.isoformat()}
        calls = {
            "start": lambda: self.ledger.start_step(job_id, step, input_hash, fence=token),
            "complete": lambda: self.ledger.complete_step(job_id, step, input_hash, output, fence=token),
            "fail": lambda: self.ledger.fail_step(job_id, step, input_hash, "boom", fence=token),
        }
        self.dirty.add(job_id)
        stale = token is not None and token != job.version
        record = self._expect(StaleVersion if stale else None, calls[op])
        if record is None:
            return
        current = self.model.steps.get(key)
        if current is None:
            status = {
                "start": StepStatus.running,
                "complete": StepStatus.completed,
                "fail": StepStatus.failed,
            }[op]
            self.model.steps[key] = StepModel(status, 1, output if op == "complete" else None)
        elif current.status is not StepStatus.completed:
            if op == "start":
                current.status, current.attempts = StepStatus.running, current.attempts + 1
            elif op == "complete":
                current.status, current.output = StepStatus.completed, output
            else:
                current.status = StepStatus.failed
        expected = self.model.steps[key]
        assert (record.status, record.attempts, record.output_ref) == (
            expected.status,
            expected.attempts,
            expected.output,
        )

    @rule(
        job_id=jobs,
        step=st.sampled_from(STEPS),
        fence=st.sampled_from([None, *FENCES]),
        owner=st.sampled_from(OWNERS),
    )
    def record_attempt(self, job_id: str, step: str, fence: str | None, owner: str) -> None:
        job = self.model.jobs[job_id]
        token = None if fence is None else self._fence(job, fence, owner)
        stale = token is not None and token != job.version
        self.dirty.add(job_id)
        number = self._expect(
            StaleVersion if stale else None,
            lambda: self.ledger.record_attempt(job_id, step, "TimeoutError", "slow", fence=token),
        )
        if number is not None:
            self.model.attempts[(job_id, step)] = self.model.attempts.get((job_id, step), 0) + 1
            assert number == self.model.attempts[(job_id, step)]

    # ------------------------------------------------------------------------------ effect rules

    @rule(
        job_id=jobs,
        op=st.sampled_from(["begin", "complete", "reconcile", "fail"]),
        draft=st.integers(0, 1),
        fence=st.sampled_from(FENCES),
        owner=st.sampled_from(OWNERS),
    )
    def raw_effect(self, job_id: str, op: str, draft: int, fence: str, owner: str) -> None:
        """Effects of another kind than publish, through the raw ledger API: the fence rules alone."""
        job = self.model.jobs[job_id]
        sha = SHAS[job.page][draft]
        key = effect_key(job_id, "notify", sha)
        token = self._fence(job, fence, owner)
        current = self.model.effects.get(key)
        error: type[Exception] | None = None
        if op != "begin" and current is None:
            error = KeyError
        elif token != job.version:
            error = StaleVersion
        calls: dict[str, Callable[[], Any]] = {
            "begin": lambda: self.ledger.begin_effect(
                job_id, "notify", sha, target="hook", fence=token, request={"sha": sha}
            ),
            "complete": lambda: self.ledger.complete_effect(
                key, revision="r", fence=token, response={"ok": 1}
            ),
            "reconcile": lambda: self.ledger.complete_effect(
                key, revision="r", fence=token, status=EffectStatus.reconciled
            ),
            "fail": lambda: self.ledger.fail_effect(key, "refused", fence=token),
        }
        self.dirty.add(job_id)
        record = self._expect(error, calls[op])
        if record is None:
            return
        if current is None:
            self.model.effects[key] = current = EffectModel(job_id, "notify", sha, EffectStatus.pending)
        elif current.status not in {EffectStatus.applied, EffectStatus.reconciled}:
            if op == "begin" and current.status is EffectStatus.failed:
                current.status = EffectStatus.pending
            elif op in {"complete", "reconcile"}:
                current.status = EffectStatus.applied if op == "complete" else EffectStatus.reconciled
                current.completed_at = self.now
            elif op == "fail":
                current.status = EffectStatus.failed
        assert record.status is current.status

    @rule(job_id=jobs, draft=st.integers(0, 1), fence=st.sampled_from(FENCES), owner=st.sampled_from(OWNERS))
    def publish(self, job_id: str, draft: int, fence: str, owner: str) -> None:
        job = self.model.jobs[job_id]
        self._publish(job, SHAS[job.page][draft], self._fence(job, fence, owner))

    def _publish(self, job: JobModel, sha: str, token: int) -> None:
        """``publish_once``: approval of exactly this draft, the fence, then intent, write, completion."""
        variant = SHAS[job.page].index(sha)
        approval = self.model.approvals.get((job.job_id, sha))
        key = effect_key(job.job_id, PUBLISH_STEP, sha)
        effect = self.model.effects.get(key)
        text = self.model.page_text[job.page]
        done = effect is not None and effect.status in {EffectStatus.applied, EffectStatus.reconciled}
        error: type[Exception] | None = None
        if approval is None or approval.decision is not Decision.approve:
            error = PolicyViolation
        elif done:
            error = None
        elif token != job.version:
            error = StaleVersion
        elif job.draft_sha != sha or job.state is not JobState.approved:
            error = PolicyViolation
        elif text is not None and text != variant:
            error = EditConflict  # another draft's text replaced the old one: this edit cannot apply
        self.dirty.add(job.job_id)
        draft = DRAFTS[job.page][variant]
        outcome = self._expect(
            error, lambda: publish_once(self.ledger, self.publisher, job.job_id, sha, draft, token)
        )
        if error is EditConflict:
            self.model.effects[key] = EffectModel(job.job_id, PUBLISH_STEP, sha, EffectStatus.failed)
        if outcome is None:
            return
        if done:
            assert outcome.status == "already_applied"
            return
        assert outcome.status == "applied"
        event("published")
        self.model.effects[key] = EffectModel(job.job_id, PUBLISH_STEP, sha, EffectStatus.applied, self.now)
        self.model.page_text[job.page] = variant

    # ---------------------------------------------------------------------------- approval rules

    @rule(job_id=jobs, draft=st.sampled_from([None, 0, 1]), hours=st.sampled_from([None, 0, 1, 24, 72]))
    def request_approval(self, job_id: str, draft: int | None, hours: int | None) -> None:
        job = self.model.jobs[job_id]
        sha = job.draft_sha if draft is None else SHAS[job.page][draft]
        if sha is None:
            return
        self._request(job, sha, None if hours is None else timedelta(hours=hours))

    def _request(self, job: JobModel, sha: str, ttl: timedelta | None) -> None:
        expires = None if ttl is None else self.now + ttl
        self.dirty.add(job.job_id)
        record = self._expect(
            ApprovalRefused if job.draft_sha != sha else None,
            lambda: self.ledger.request_approval(job.job_id, sha, expires_at=expires),
        )
        if record is not None:
            model = self.model.approvals.setdefault((job.job_id, sha), ApprovalModel(self.now, expires))
            assert (record.requested_at, record.expires_at) == (model.requested_at, model.expires_at)

    def _decision_error(self, job: JobModel, sha: str, decision: Decision) -> type[Exception] | None:
        existing = self.model.approvals.get((job.job_id, sha))
        if existing is not None and existing.decision is not None:
            return None if existing.decision is decision else ApprovalRefused
        if job.state in TERMINAL_STATES or job.draft_sha != sha:
            return ApprovalRefused
        if existing is not None and existing.expires_at is not None and self.now >= existing.expires_at:
            return ApprovalRefused
        return None

    def _record_decision(self, job: JobModel, sha: str, decision: Decision) -> None:
        model = self.model.approvals.setdefault((job.job_id, sha), ApprovalModel(self.now, None))
        if model.decision is None:
            model.decision, model.decided_at = decision, self.now

    @rule(job_id=jobs, draft=st.sampled_from([None, 0, 1]), decision=st.sampled_from(list(Decision)))
    def decide(self, job_id: str, draft: int | None, decision: Decision) -> None:
        job = self.model.jobs[job_id]
        sha = job.draft_sha if draft is None else SHAS[job.page][draft]
        if sha is not None:
            self._decide(job, sha, decision)

    def _decide(self, job: JobModel, sha: str, decision: Decision) -> None:
        self.dirty.add(job.job_id)
        error = self._decision_error(job, sha, decision)
        record = self._expect(
            error,
            lambda: self.ledger.decide(job.job_id, sha, decision, reviewer="ann", channel=Channel.cli),
        )
        if record is not None:
            self._record_decision(job, sha, decision)
            assert record.decision is self.model.approvals[(job.job_id, sha)].decision

    @rule(job_id=jobs, first=st.sampled_from(list(Decision)), second=st.sampled_from(list(Decision)))
    def decide_concurrently(self, job_id: str, first: Decision, second: Decision) -> None:
        """Two reviewers (CLI and UI) answer at the same moment: the first decision wins, the other is
        refused unless it is the same decision."""
        job = self.model.jobs[job_id]
        if job.draft_sha is None:
            return
        sha = job.draft_sha
        answers: dict[Decision, list[object]] = {first: [], second: []}
        gate = threading.Barrier(2)

        def answer(decision: Decision, channel: Channel) -> None:
            gate.wait()
            try:
                result: object = self.ledger.decide(
                    job.job_id, sha, decision, reviewer=channel.value, channel=channel
                )
            except ApprovalRefused as exc:
                result = exc
            answers[decision].append(result)

        threads = [
            threading.Thread(target=answer, args=(first, Channel.cli)),
            threading.Thread(target=answer, args=(second, Channel.ui)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        self.dirty.add(job_id)
        results = answers[first] + ([] if first is second else answers[second])
        assert len(results) == 2
        accepted = [r for r in results if not isinstance(r, ApprovalRefused)]
        if self._decision_error(job, sha, first) and self._decision_error(job, sha, second):
            assert not accepted, accepted
            return
        winners = {r.decision for r in accepted}  # type: ignore[attr-defined]
        assert len(winners) == 1, results  # never two different decisions for one draft
        assert len(accepted) == (2 if first is second else 1), results
        self._record_decision(job, sha, winners.pop())
        event(f"concurrent decisions, {len(accepted)} accepted")

    def _pending_deadlines(self) -> list[datetime]:
        """Deadlines of undecided requests that jobs awaiting review are waiting on."""
        return [
            approval.expires_at
            for job in self.model.jobs.values()
            if job.state is JobState.awaiting_review and job.draft_sha is not None
            for (job_id, sha), approval in self.model.approvals.items()
            if job_id == job.job_id and sha == job.draft_sha
            if approval.decision is None and approval.expires_at is not None
        ]

    @precondition(lambda self: bool(self._pending_deadlines()))
    @rule(early=st.booleans())
    def deadline_passes(self, early: bool) -> None:
        """Nobody decides: the clock reaches a parked job's deadline (or stops a second short of it) and
        the sweeper runs."""
        deadline = min(self._pending_deadlines())
        target = deadline - timedelta(seconds=1) if early else deadline
        if target > self.now:
            self.clock.set(target)
        self.sweep(0)

    @rule(later=st.sampled_from([0, 3600, 3 * 86_400]))
    def sweep(self, later: int) -> None:
        """The sweeper (``later`` seconds from now): overdue approvals expire, never approve; stalled jobs
        are listed for restart."""
        self.clock.advance(timedelta(seconds=later))
        due = {
            job.job_id
            for job in self.model.jobs.values()
            if job.state is JobState.awaiting_review
            and job.draft_sha is not None
            and (approval := self.model.approvals.get((job.job_id, job.draft_sha))) is not None
            and approval.decision is None
            and approval.expires_at is not None
            and approval.expires_at <= self.now
        }
        report = sweep_ledger(self.ledger, idle_after=IDLE_AFTER, limit=1000)
        assert set(report.expired) == due
        event(f"sweep expired {len(due)}")
        for job_id in due:
            job = self.model.jobs[job_id]
            self._bump(
                job,
                state=JobState.approval_expired,
                stop_reason=StopReason.approval_expired,
                lease_owner=None,
                lease_expires_at=None,
            )
            self.dirty.add(job_id)
        stalled = {
            job.job_id
            for job in self.model.jobs.values()
            if job.state in LIVE_STATES - {JobState.awaiting_review, JobState.refresh_needed}
            and (
                (
                    job.lease_owner is not None
                    and job.lease_expires_at is not None
                    and job.lease_expires_at <= self.now
                )
                or (job.lease_owner is None and job.updated_at <= self.now - IDLE_AFTER)
            )
        }
        assert set(report.restart) == stalled

    # ----------------------------------------------------------------------------- evidence rules

    @rule(job_id=jobs, kind=st.sampled_from(NOTE_KINDS), payload=st.sampled_from(["x", "y"]))
    def append_note(self, job_id: str, kind: str, payload: str) -> None:
        record = self.ledger.append_evidence(job_id, kind, {"value": payload})
        notes = self.model.notes.setdefault((job_id, kind), [])
        if not notes or notes[-1] != payload:  # the same observation again is not appended twice
            notes.append(payload)
        assert record.payload == {"value": payload}
        self.dirty.add(job_id)

    # -------------------------------------------------------------------------------- invariants

    @invariant()
    def ledger_matches_the_model(self) -> None:
        if not self.dirty:
            return
        jobs = self.ledger.list_jobs()
        live_pages = [job.page_url for job in jobs if job.state in LIVE_STATES]
        assert len(live_pages) == len(set(live_pages)), "two live jobs for one page"
        by_id = {job.job_id: job for job in jobs}
        assert set(by_id) == set(self.model.jobs)
        for job_id in sorted(self.dirty):
            self._check_job(by_id[job_id])
        self.dirty.clear()
        for page in PAGES:
            text = (self.content / _page_file(page)).read_text(encoding="utf-8")
            variant = self.model.page_text[page]
            assert text.count(NEW[0]) + text.count(NEW[1]) == (0 if variant is None else 1), text
            assert (OLD in text) == (variant is None)

    def _check_job(self, actual: Any) -> None:
        job_id = actual.job_id
        model = self.model.jobs[job_id]
        # Only allowed transitions happened, and terminal jobs say why.
        before = self.seen.get(job_id)
        if before is not None and before is not actual.state:
            assert actual.state in TRANSITIONS[before], f"{before} -> {actual.state} is not an allowed edge"
        self.seen[job_id] = actual.state
        if actual.state in TERMINAL_STATES:
            assert actual.stop_reason in TERMINAL_STOP_REASONS[actual.state], actual
        else:
            assert actual.stop_reason is None, actual
        expected = model
        assert (
            actual.state,
            actual.version,
            actual.draft_sha,
            actual.stop_reason,
            actual.lease_owner,
            actual.lease_expires_at,
            actual.updated_at,
        ) == (
            expected.state,
            expected.version,
            expected.draft_sha,
            expected.stop_reason,
            expected.lease_owner,
            expected.lease_expires_at,
            expected.updated_at,
        )
        # Steps and attempts.
        steps = {(s.job_id, s.step, s.input_hash): s for s in self.ledger.list_steps(job_id)}
        assert {k: (s.status, s.attempts, s.output_ref) for k, s in steps.items()} == {
            k: (s.status, s.attempts, s.output) for k, s in self.model.steps.items() if k[0] == job_id
        }
        history = self.ledger.attempt_history(job_id)
        assert len(history) == sum(n for (j, _), n in self.model.attempts.items() if j == job_id)
        # Effects: as modelled; a done publish effect only for an exactly approved draft, approved first.
        effects = {e.key: e for e in self.ledger.list_effects(job_id)}
        assert {k: (e.status, e.completed_at) for k, e in effects.items()} == {
            k: (e.status, e.completed_at) for k, e in self.model.effects.items() if e.job_id == job_id
        }
        for sha in SHAS[model.page]:
            approval = self.ledger.get_approval(job_id, sha)
            wanted = self.model.approvals.get((job_id, sha))
            if wanted is None:
                assert approval is None
                continue
            assert approval is not None
            assert (approval.decision, approval.decided_at, approval.requested_at, approval.expires_at) == (
                wanted.decision,
                wanted.decided_at,
                wanted.requested_at,
                wanted.expires_at,
            )
            publish = effects.get(effect_key(job_id, PUBLISH_STEP, sha))
            if publish is not None and publish.done:
                assert approval.decision is Decision.approve
                assert approval.decided_at is not None and publish.completed_at is not None
                assert approval.decided_at <= publish.completed_at
        if actual.state in {JobState.published, JobState.monitoring}:
            assert actual.draft_sha is not None
            assert self.ledger.is_approved(job_id, actual.draft_sha)
            publish = effects.get(effect_key(job_id, PUBLISH_STEP, actual.draft_sha))
            assert publish is not None and publish.done
        # Evidence: the chain verifies, and repeated identical observations were not appended twice.
        chain = self.ledger.verify_chain(job_id)
        assert chain.ok, chain.problem
        for kind in NOTE_KINDS:
            got = [r.payload["value"] for r in self.ledger.evidence(job_id, kind)]
            assert got == self.model.notes.get((job_id, kind), [])


QUICK = settings(
    max_examples=60,
    stateful_step_count=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.scenario(
    name="Ledger state machine (Hypothesis, quick)",
    faults="random ledger operations: illegal edges, stale fences, lease races, concurrent decisions",
    checks="ledger = model; allowed edges only; one publish per draft, approved first; chains verify",
)
def test_ledger_state_machine() -> None:
    run_state_machine_as_test(LedgerMachine, settings=QUICK)


@pytest.mark.slow
@pytest.mark.scenario(
    name="Ledger state machine (Hypothesis, long)",
    faults="as the quick run, with more and longer operation sequences",
    checks="the same invariants after every step",
)
def test_ledger_state_machine_long() -> None:
    run_state_machine_as_test(
        LedgerMachine, settings=settings(QUICK, max_examples=120, stateful_step_count=60)
    )
