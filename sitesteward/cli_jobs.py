"""``sitesteward jobs | show | approve | reject | sweep``: the ledger's face on the command line.

Decisions are written to the ledger first, then the job's run continues: a paused or suspended Prefect
run is resumed with the same answer (the flow records it again, idempotently, and re-checks the ledger);
a parked job is continued in this process.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from sitesteward import ledger as ledger_module
from sitesteward.ledger import Channel, Decision, JobRecord, JobState
from sitesteward.settings import get_settings

if TYPE_CHECKING:  # the store brings SQLAlchemy: loaded by the commands that open the ledger only
    from sitesteward.ledger import Ledger

out = Console()
err = Console(stderr=True, soft_wrap=True)


def _ledger() -> Ledger:
    from sitesteward.ledger import Ledger

    return Ledger.open(get_settings().ledger_url)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _job_row(ledger: Ledger, job: JobRecord) -> dict[str, Any]:
    approval = ledger.get_approval(job.job_id, job.draft_sha) if job.draft_sha else None
    if approval is None:
        approval_status = "-"
    elif approval.pending:
        approval_status = "pending"
    else:
        approval_status = f"{approval.decision} ({approval.reviewer})"
    return {
        "job_id": job.job_id,
        "page": job.page_url,
        "state": job.state.value,
        "step": job.current_step or "",
        "attempts": len(ledger.attempt_history(job.job_id)),
        "approval": approval_status,
        "stop_reason": job.stop_reason.value if job.stop_reason else None,
        "next_action": job.next_action or "",
        "updated": job.updated_at.isoformat(timespec="seconds"),
    }


def print_jobs(ledger: Ledger, jobs: list[JobRecord], *, as_json: bool = False, title: str = "Jobs") -> None:
    """Print the job table (or JSON rows)."""
    rows = [_job_row(ledger, job) for job in jobs]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title=title)
    for column in ("job", "page", "state", "attempts", "approval", "next action"):
        table.add_column(column, overflow="fold")
    for row in rows:
        state = row["state"] + (f" ({row['stop_reason']})" if row["stop_reason"] else "")
        table.add_row(
            row["job_id"], row["page"], state, str(row["attempts"]), row["approval"], row["next_action"]
        )
    out.print(table)


def jobs(
    state: Annotated[list[str] | None, typer.Option(help="Only jobs in these states.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
) -> None:
    """List jobs with state, attempts, approval status and next action."""
    try:
        states = [JobState(s) for s in state] if state else None
    except ValueError as exc:
        raise _fail(f"{exc}; states: {', '.join(s.value for s in JobState)}") from exc
    ledger = _ledger()
    try:
        print_jobs(ledger, ledger.list_jobs(states=states), as_json=json_output)
    finally:
        ledger.close()


def show(
    job_id: Annotated[str, typer.Argument(help="The job ID (see `sitesteward jobs`).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the full record as JSON.")] = False,
) -> None:
    """Print a job's full record: steps, attempts, approvals, effects, evidence chain, triage note."""
    ledger = _ledger()
    try:
        try:
            job = ledger.get_job(job_id)
        except ledger_module.UnknownJob as exc:
            raise _fail(f"no job {job_id}") from exc
        record: dict[str, Any] = {
            "job": job.model_dump(mode="json"),
            "steps": [s.model_dump(mode="json") for s in ledger.list_steps(job_id)],
            "attempts": [a.model_dump(mode="json") for a in ledger.attempt_history(job_id)],
            "approvals": [a.model_dump(mode="json") for a in _approvals(ledger, job)],
            "effects": [e.model_dump(mode="json") for e in ledger.list_effects(job_id)],
            "evidence": [
                {
                    "seq": e.seq,
                    "kind": e.kind,
                    "hash": e.hash,
                    "prev": e.prev_hash,
                    "at": e.created_at.isoformat(),
                }
                for e in ledger.evidence(job_id)
            ],
            "chain": ledger.verify_chain(job_id).model_dump(mode="json"),
        }
        if json_output:
            out.print_json(json.dumps(record, default=str))
            return
        out.print(f"[bold]{job.job_id}[/]  {job.page_url}")
        out.print(f"goal: {job.goal}")
        out.print(f"state: [bold]{job.state.value}[/]  step: {job.current_step}  version: {job.version}")
        if job.stop_reason:
            out.print(f"stopped: {job.stop_reason.value} — {job.failure_reason}")
        if job.next_action:
            out.print(f"next action: {job.next_action}")
        if job.draft_sha:
            out.print(f"draft: {job.draft_sha}")
            if job.state is JobState.awaiting_review:
                out.print(
                    f"decide: sitesteward approve {job.job_id} --draft {job.draft_sha[:12]} --reviewer NAME"
                )
        if job.triage_note:
            note = json.loads(job.triage_note)
            out.print(
                f"triage: [{note.get('failure_class')}] {note.get('summary')} → {note.get('next_action')}"
            )
        table = Table(title="steps")
        for column in ("step", "status", "attempts", "updated"):
            table.add_column(column)
        for step in record["steps"]:
            table.add_row(
                step["step"], step["status"], str(step.get("attempts", "")), str(step.get("updated_at", ""))
            )
        out.print(table)
        for approval in record["approvals"]:
            out.print(
                f"approval of {approval['draft_sha'][:12]}: {approval['decision'] or 'pending'}"
                f" by {approval['reviewer'] or '-'} via {approval['channel'] or '-'}"
                f" (expires {approval['expires_at']})"
            )
        for effect in record["effects"]:
            out.print(f"effect {effect['key']}: {effect['status']} revision {effect.get('revision')}")
        chain = record["chain"]
        status = "intact" if chain["ok"] else f"BROKEN: {chain['problem']}"
        out.print(f"evidence: {chain['records']} records, chain {status}")
        for item in record["evidence"]:
            out.print(f"  {item['seq']:>3} {item['kind']:<20} {item['hash'][:16]} ← {item['prev'][:16]}")
        review = ledger.latest_evidence(job_id, "review")
        if review is not None:
            out.print(Markdown(str(review.payload.get("markdown", ""))))
    finally:
        ledger.close()


def _approvals(ledger: Ledger, job: JobRecord) -> list[Any]:
    approval = ledger.get_approval(job.job_id, job.draft_sha) if job.draft_sha else None
    return [approval] if approval is not None else []


_DRAFT_OPTION = typer.Option(
    "--draft",
    help="The draft sha you reviewed (8+ characters, from `show`): refuse if the draft changed since.",
)


def decide(
    job_id: str,
    decision: Decision,
    reviewer: str,
    notes: str | None,
    *,
    resume: bool,
    draft: str | None = None,
) -> JobRecord:
    """Write a decision to the ledger, then let the job's run continue. Returns the job afterwards.

    ``draft`` (the sha, or its first 8+ characters, that the reviewer read in ``sitesteward show``)
    makes the decision refuse a draft that changed since: a reviewer never approves a draft unseen.
    """
    ledger = _ledger()
    try:
        try:
            job = ledger.get_job(job_id)
        except ledger_module.UnknownJob as exc:
            raise _fail(f"no job {job_id}") from exc
        if job.state is not JobState.awaiting_review or not job.draft_sha:
            raise _fail(f"job {job_id} is {job.state.value}, not awaiting review")
        if draft is not None and len(draft.strip()) < 8:
            raise _fail("--draft needs at least the first 8 characters of the draft sha")
        if draft is not None and not job.draft_sha.startswith(draft.strip().lower()):
            raise _fail(
                f"job {job_id} now waits on draft {job.draft_sha[:12]}, not {draft}: "
                f"read it with `sitesteward show {job_id}` before deciding"
            )
        try:
            ledger.decide(
                job_id, job.draft_sha, decision, reviewer=reviewer, channel=Channel.cli, notes=notes
            )
        except ledger_module.ApprovalRefused as exc:
            raise _fail(str(exc)) from exc
    finally:
        ledger.close()
    if resume:
        continue_job(job)
    ledger = _ledger()
    try:
        return ledger.get_job(job_id)
    finally:
        ledger.close()


def continue_job(job: JobRecord) -> None:
    """Resume the job's paused Prefect run if there is one, else run it on in this process."""
    from flows.refresh_page import RefreshParams, refresh_page

    if job.flow_run_id and _resume_paused_run(job):
        return
    refresh_page(RefreshParams(job_id=job.job_id))


def _resume_paused_run(job: JobRecord) -> bool:
    """Resume a paused/suspended run with the ledger's decision as its input; False if none is paused."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    ledger = _ledger()
    try:
        approval = ledger.get_approval(job.job_id, job.draft_sha or "")
    finally:
        ledger.close()
    if approval is None or approval.pending:
        return False
    try:
        run_id = UUID(job.flow_run_id or "")
    except ValueError:
        return False
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(run_id)
        except Exception:
            return False
    if run.state is None or not run.state.is_paused():
        return False
    resume_flow_run(
        run_id,
        run_input={
            "decision": approval.decision.value if approval.decision else "reject",
            "reviewer": approval.reviewer or "cli",
            "notes": approval.notes or "",
        },
    )
    out.print(f"resumed flow run {run_id}")
    return True


def approve(
    job_id: Annotated[str, typer.Argument(help="The job awaiting review.")],
    reviewer: Annotated[str, typer.Option(help="Your name, recorded in the ledger.")],
    notes: Annotated[str | None, typer.Option(help="Why.")] = None,
    no_resume: Annotated[bool, typer.Option("--no-resume", help="Only record the decision.")] = False,
    draft: Annotated[str | None, _DRAFT_OPTION] = None,
) -> None:
    """Approve the job's current draft (exactly that draft), then publish and verify it."""
    job = decide(job_id, Decision.approve, reviewer, notes, resume=not no_resume, draft=draft)
    out.print(f"{job.job_id}: {job.state.value}" + (f" ({job.failure_reason})" if job.failure_reason else ""))
    if job.state is JobState.failed:
        raise typer.Exit(1)


def reject(
    job_id: Annotated[str, typer.Argument(help="The job awaiting review.")],
    reviewer: Annotated[str, typer.Option(help="Your name, recorded in the ledger.")],
    notes: Annotated[str | None, typer.Option(help="Why (shown in the job record).")] = None,
    no_resume: Annotated[bool, typer.Option("--no-resume", help="Only record the decision.")] = False,
    draft: Annotated[str | None, _DRAFT_OPTION] = None,
) -> None:
    """Reject the job's current draft; nothing is published."""
    job = decide(job_id, Decision.reject, reviewer, notes, resume=not no_resume, draft=draft)
    out.print(f"{job.job_id}: {job.state.value}")


def sweep(
    idle_minutes: Annotated[
        int, typer.Option(min=1, help="Leaseless and unchanged this long = stalled.")
    ] = 30,
    limit: Annotated[int, typer.Option(min=0, help="Jobs restarted at most.")] = 50,
) -> None:
    """Expire overdue approvals and restart stalled jobs from their last checkpoint."""
    from flows.sweep_jobs import SweepParams, sweep_jobs

    summary = sweep_jobs(SweepParams(idle_minutes=idle_minutes, limit=limit))
    out.print(f"expired {len(summary.expired)} approvals; restarted {len(summary.restarted)} jobs")
    for outcome in summary.restarted:
        out.print(f"  {outcome.job_id}: {outcome.state}")
