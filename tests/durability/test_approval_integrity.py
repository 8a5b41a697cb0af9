"""Approval integrity at the job level: whoever decides, however often, through whichever door.

The ledger-level races (ten threads deciding, approve against reject) are in
``tests/integration/test_ledger_concurrency.py`` and the suspended-run API resume (approve, forged
inputs, then reject) in ``tests/integration/test_deploy.py``. Here the same promises are checked on a
real job, through the real doors: ``sitesteward approve|reject`` processes racing each other, a draft
that changed under an earlier approval, the sweeper expiring a request, and ``POST
/api/flow_runs/{id}/resume`` on a *paused* run, bypassing the CLI. The invariant each time: a publish
happens only for a draft whose ``approve`` is recorded in the ledger, exactly once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from flows.refresh_page import ApprovalForm
from sitesteward.ledger import ApprovalRefused, Channel, Decision, JobState, Ledger, StopReason
from sitesteward.settings import get_settings
from sitesteward.sweep import sweep_ledger
from tests.durability.harness import NEW, OLD, ROOT, Scenario, llm_answer
from tests.durability.test_retry_budgets import run_worker, staged_job, worker_command, worker_env
from tests.llm_server import Reply

SITESTEWARD = str(Path(sys.executable).with_name("sitesteward"))


def _ledger() -> Ledger:
    return Ledger.open(get_settings().ledger_url)


@pytest.fixture
def parked(tmp_path: Path, prefect_api: None) -> Iterator[Scenario]:
    """A job waiting for review of its first draft (the run that asked has ended)."""
    with staged_job(tmp_path) as job:
        job.llm.script(llm_answer(job.sources.base_url))
        run_worker(job)
        assert job.state() is JobState.awaiting_review
        yield job


def _cli(job: Scenario, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SITESTEWARD, *args],
        cwd=ROOT,
        env=worker_env(job),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=180)
    return process.returncode, output


def _assert_nothing_published(job: Scenario) -> None:
    with _ledger() as ledger:
        assert ledger.list_effects(job.job_id) == []
        assert ledger.evidence(job.job_id, "verification") == []
        assert ledger.verify_chain(job.job_id).ok
    text = (job.root / "why-static.md").read_text(encoding="utf-8")
    assert OLD in text and NEW not in text


def _approval_evidence(job: Scenario) -> list[dict[str, Any]]:
    with _ledger() as ledger:
        return [record.payload for record in ledger.evidence(job.job_id, "approval")]


# ---------------------------------------------------------------------------------- forged input


@pytest.mark.scenario(
    name="forged approval input",
    faults="resume input with unknown fields, wrong types, template objects, missing or empty reviewer",
    checks="ApprovalForm (the schema the Prefect server validates resumes against) refuses every one",
)
@pytest.mark.parametrize(
    "forged",
    [
        {"decision": "approve", "reviewer": "m", "draft_sha": "0" * 64},  # retarget another draft
        {"decision": "approve", "reviewer": "m", "job_id": "another-job"},  # retarget another job
        {"decision": "yes", "reviewer": "m"},
        {"decision": True, "reviewer": "m"},
        {"decision": ["approve"], "reviewer": "m"},
        {"decision": "approve", "reviewer": 7},
        {"decision": "approve", "reviewer": "m", "notes": {"text": "ok"}},
        {"decision": {"__prefect_kind": "json", "value": '"approve"'}, "reviewer": "m"},
        {"decision": "approve", "reviewer": {"__prefect_kind": "jinja", "template": "{{ 'x' }}"}},
        {"decision": "approve"},
        {"decision": "approve", "reviewer": ""},
        {"decision": "approve", "reviewer": "m" * 201},
    ],
)
def test_approval_form_refuses_forged_input(forged: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ApprovalForm.model_validate(forged)
    schema = ApprovalForm.model_json_schema()
    assert schema["additionalProperties"] is False  # what the server checks a resume against
    assert ApprovalForm.model_validate({"reviewer": "m"}).decision == "reject"  # the default never publishes


# ---------------------------------------------------------------------------------- the CLI


@pytest.mark.slow  # ten interpreters each starting a flow run: ~40 s on two busy cores
@pytest.mark.prefect
@pytest.mark.scenario(
    name="ten concurrent `sitesteward approve` processes",
    faults="10 CLI processes approve the same parked job at once (each then runs the job on)",
    checks="one approval decision and one approval record; one publish of the approved draft; one model "
    "call; monitoring with the evidence chain intact",
)
def test_ten_concurrent_cli_approvals_make_one_decision_and_one_publish(parked: Scenario) -> None:
    processes = [_cli(parked, "approve", parked.job_id, "--reviewer", f"r{i}") for i in range(10)]
    results = [_finish(process) for process in processes]
    codes = sorted(code for code, _ in results)
    # 0: decided (or repeated the same decision) and ran the job on; 2: came after the job had moved on
    assert set(codes) <= {0, 2} and codes[0] == 0, results
    parked.check_invariants()  # monitoring, one effect for the approved sha, approved <= written, ...
    approvals = _approval_evidence(parked)
    assert len(approvals) == 1, approvals
    with _ledger() as ledger:
        job = ledger.get_job(parked.job_id)
        approval = ledger.get_approval(parked.job_id, job.draft_sha or "")
    assert approval is not None and approval.channel is Channel.cli
    assert approval.reviewer == approvals[0]["reviewer"]


@pytest.mark.prefect
@pytest.mark.scenario(
    name="approve/reject race through the CLI, and decisions for the wrong job",
    faults="`sitesteward approve` and `sitesteward reject` started together on one parked job; a "
    "decision for an unknown job id and for another job",
    checks="exactly one winner in the ledger, the loser refused; published iff approve won; the wrong-job "
    "decisions are refused and change nothing",
)
def test_approve_reject_race_has_one_winner(parked: Scenario) -> None:
    # wrong job ids first: an unknown one, and another job that has no such draft
    with _ledger() as ledger:
        current = ledger.get_job(parked.job_id).draft_sha or ""
        other = ledger.submit_job("crash", f"{parked.site.base_url}/support/", goal="g", trigger="t2").job
        with pytest.raises(ApprovalRefused):
            ledger.decide(other.job_id, current, Decision.approve, reviewer="m", channel=Channel.cli)
        assert ledger.get_approval(other.job_id, current) is None
        assert ledger.get_approval(parked.job_id, current).pending  # type: ignore[union-attr]

    unknown = _cli(parked, "approve", "no-such-job", "--reviewer", "m")
    approve = _cli(parked, "approve", parked.job_id, "--reviewer", "alice")
    reject = _cli(parked, "reject", parked.job_id, "--reviewer", "bob")
    (approve_code, approve_out), (reject_code, reject_out) = _finish(approve), _finish(reject)
    code, output = _finish(unknown)
    assert code == 2 and "no job" in output, output
    with _ledger() as ledger:
        job = ledger.get_job(parked.job_id)
        approval = ledger.get_approval(parked.job_id, job.draft_sha or "")
    assert approval is not None and approval.decision is not None
    won = approval.decision
    assert len(_approval_evidence(parked)) == 1
    if won is Decision.approve:
        assert (approve_code, reject_code) == (0, 2), (approve_out, reject_out)
        assert "already decided" in reject_out
        assert approval.reviewer == "alice"
        parked.check_invariants()
    else:
        assert won is Decision.reject and (approve_code, reject_code) == (2, 0), (approve_out, reject_out)
        assert "already decided" in approve_out
        assert approval.reviewer == "bob"
        assert job.state is JobState.rejected and job.stop_reason is StopReason.rejected
        _assert_nothing_published(parked)


# ---------------------------------------------------------------------------------- stale and expired


@pytest.mark.prefect
@pytest.mark.scenario(
    name="stale approval: the draft changed after it was approved",
    faults="draft A approved in the ledger; the next run drafts B (the draft's inputs changed: here the "
    "model setting, which is part of the draft key as the page and sources are)",
    checks="B is not published on A's approval: the job waits for review of B, A's approval stays with "
    "A, nothing written",
)
def test_an_approval_of_an_old_draft_does_not_release_a_new_one(parked: Scenario) -> None:
    with _ledger() as ledger:
        first = ledger.get_job(parked.job_id).draft_sha or ""
        # what `sitesteward approve --no-resume` records while draft A is current
        ledger.decide(parked.job_id, first, Decision.approve, reviewer="alice", channel=Channel.cli)
    different = json.loads(llm_answer(parked.sources.base_url).content)
    different["edits"][0]["justification"] = "The 2025 edition of the survey reports 57%."
    parked.llm.script(Reply.json(different))
    run_worker(parked, env={"SITESTEWARD_LLM_MODEL": "test-model-2"})
    assert parked.llm.calls == 2  # the changed inputs were drafted again
    with _ledger() as ledger:
        job = ledger.get_job(parked.job_id)
        assert job.state is JobState.awaiting_review, (job.state, job.failure_reason)
        assert job.draft_sha and job.draft_sha != first
        old, new = (
            ledger.get_approval(parked.job_id, first),
            ledger.get_approval(parked.job_id, job.draft_sha),
        )
        assert old is not None and old.decision is Decision.approve
        assert new is not None and new.pending  # asked again, for the new draft
        reviews = ledger.evidence(parked.job_id, "review")
        assert [r.payload["draft_sha"] for r in reviews] == [first, job.draft_sha]
        # an approval aimed at the old draft cannot be re-recorded for it, nor applies to the new one
        with pytest.raises(ApprovalRefused):
            ledger.decide(parked.job_id, first, Decision.reject, reviewer="bob", channel=Channel.cli)
    _assert_nothing_published(parked)


@pytest.mark.prefect
@pytest.mark.scenario(
    name="approval expires (sweeper)",
    faults="nobody decides before the one-second deadline; the sweeper runs; then a late "
    "`sitesteward approve`",
    checks="approval_expired with reason, next action and triage note; the late approval is refused and "
    "the request stays undecided (never auto-approved); nothing published",
)
def test_an_expired_approval_publishes_nothing(tmp_path: Path, prefect_api: None) -> None:
    with staged_job(tmp_path) as job:
        job.llm.script(llm_answer(job.sources.base_url))
        run_worker(job, params={"approval_hours": 1 / 3600})  # a one-second deadline
        with _ledger() as ledger:
            record = ledger.get_job(job.job_id)
            assert record.state is JobState.awaiting_review
            request = ledger.get_approval(job.job_id, record.draft_sha or "")
            assert request is not None and request.expires_at is not None
            assert request.expires_at - request.requested_at <= timedelta(seconds=1.01)
            time.sleep(max(0.0, (request.expires_at - ledger.clock.now()).total_seconds()) + 0.05)
            assert sweep_ledger(ledger, idle_after=timedelta(days=1), limit=0).expired == [job.job_id]
            record = ledger.get_job(job.job_id)
        assert record.state is JobState.approval_expired
        assert record.stop_reason is StopReason.approval_expired
        assert record.next_action and record.triage_note and record.failure_reason
        code, output = _finish(_cli(job, "approve", job.job_id, "--reviewer", "late"))
        assert code == 2 and "approval_expired" in output, output
        with _ledger() as ledger:
            assert ledger.get_job(job.job_id).state is JobState.approval_expired
            approval = ledger.get_approval(job.job_id, record.draft_sha or "")
        assert approval is not None and approval.pending  # never auto-approved
        _assert_nothing_published(job)


# ---------------------------------------------------------------------------------- direct resume


def _paused(job: Scenario) -> tuple[subprocess.Popen[str], str]:
    """Start a worker that pauses in-process for review; return it and its flow run id once paused."""
    worker = subprocess.Popen(
        worker_command(job, {"approval": "pause"}),
        cwd=ROOT,
        env=worker_env(job),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=job.api_url, timeout=10) as api:
        while time.monotonic() < deadline:
            assert worker.poll() is None, worker.communicate()[0]
            with _ledger() as ledger:
                record = ledger.get_job(job.job_id)
            if record.state is JobState.awaiting_review and record.flow_run_id:
                state = api.get(f"/flow_runs/{record.flow_run_id}").json()["state"]
                if state and state["type"] == "PAUSED":
                    return worker, record.flow_run_id
            time.sleep(0.2)
    worker.kill()
    raise AssertionError(f"the run never paused: {worker.communicate()[0]}")


def _resume(job: Scenario, run_id: str, run_input: dict[str, Any]) -> str:
    """POST /flow_runs/{id}/resume with ``run_input``, as the UI or any API client can; the status."""
    with httpx.Client(base_url=job.api_url, timeout=10) as api:
        response = api.post(f"/flow_runs/{run_id}/resume", json={"run_input": run_input})
        response.raise_for_status()
        return str(response.json()["status"])


def _run_state(job: Scenario, run_id: str) -> str:
    with httpx.Client(base_url=job.api_url, timeout=10) as api:
        return str(api.get(f"/flow_runs/{run_id}").json()["state"]["type"])


@pytest.mark.prefect
@pytest.mark.scenario(
    name="direct Prefect resume of a paused run, bypassing the CLI",
    faults="POST /api/flow_runs/{id}/resume: unknown field, bad decision, missing reviewer, wrong type, a "
    "template that renders to a bad decision; then, with a reject recorded in the ledger for the current "
    "draft, a valid `approve` resume",
    checks="every invalid input is refused and the run stays paused; the valid resume is accepted but the "
    "ledger's decision stands (reject, channel cli): the job ends rejected, nothing published",
)
def test_direct_resume_publishes_only_what_the_ledger_approved(tmp_path: Path, prefect_api: None) -> None:
    with staged_job(tmp_path) as job:
        job.llm.script(llm_answer(job.sources.base_url))
        worker, run_id = _paused(job)
        try:
            forged: list[dict[str, Any]] = [
                {"decision": "approve", "reviewer": "m", "notes": "", "draft_sha": "0" * 64},
                {"decision": "yes", "reviewer": "m", "notes": ""},
                {"decision": "approve", "notes": ""},
                {"decision": "approve", "reviewer": ["m"], "notes": ""},
                {"decision": {"__prefect_kind": "jinja", "template": "{{ 'y' ~ 'es' }}"}, "reviewer": "m"},
            ]
            for run_input in forged:
                assert _resume(job, run_id, run_input) == "REJECT", run_input
                assert _run_state(job, run_id) == "PAUSED"
            with _ledger() as ledger:
                sha = ledger.get_job(job.job_id).draft_sha or ""
                ledger.decide(job.job_id, sha, Decision.reject, reviewer="bob", channel=Channel.cli)
            valid = {"decision": "approve", "reviewer": "mallory", "notes": ""}
            assert _resume(job, run_id, valid) == "ACCEPT"
            code, output = _finish(worker)
        finally:
            worker.kill()
        assert code == 0, output
        with _ledger() as ledger:
            record = ledger.get_job(job.job_id)
            approval = ledger.get_approval(job.job_id, sha)
        assert record.state is JobState.rejected and record.stop_reason is StopReason.rejected, output
        assert approval is not None
        decided = (approval.decision, approval.reviewer, approval.channel)
        assert decided == (Decision.reject, "bob", Channel.cli)
        assert [p["decision"] for p in _approval_evidence(job)] == ["reject"]
        _assert_nothing_published(job)
