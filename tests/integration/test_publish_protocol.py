"""publish_once on both ledger backends: approval required, exactly one write, reconcile after crashes."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from sitesteward.engine.steps import PlainSteps
from sitesteward.errors import PolicyViolation, StaleVersion
from sitesteward.jobs import JobInputs
from sitesteward.ledger import (
    Channel,
    Decision,
    EffectStatus,
    JobRecord,
    JobState,
    Ledger,
    ManualClock,
    effect_key,
)
from sitesteward.models import Draft, Edit
from sitesteward.publish import EditConflict, MarkdownContentTarget, draft_hash, publish_once
from tests.integration import test_ledger as shared

# The two-backend ledger fixtures (to move into tests/integration/conftest.py, a shared file).
ledger_url, clock, ledger = shared.ledger_url, shared.clock, shared.ledger

BASE = "https://docs.example.test/"
PAGE = BASE + "guide/"
ORIGINAL = "---\ntitle: Setup guide\n---\n# Setup\n\nAs of 2021 the CLI needs Python 3.8.\n"
EDIT = Edit(old="As of 2021", new="As of 2026", finding="stale_date")
DRAFT = Draft(page_url=PAGE, edits=[EDIT], drafter="offline", prompt_version="v1")
SHA = draft_hash(DRAFT)
OTHER_DRAFT = Draft(
    page_url=PAGE,
    edits=[Edit(old="Python 3.8", new="Python 3.12", finding="stale_version")],
    drafter="offline",
    prompt_version="v1",
)
OTHER_SHA = draft_hash(OTHER_DRAFT)


class CountingTarget(MarkdownContentTarget):
    """Counts real file writes (per instance)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.writes = 0

    def _write(self, path: Path, text: str) -> None:
        self.writes += 1
        super()._write(path, text)


@pytest.fixture
def content(tmp_path: Path) -> Path:
    root = tmp_path / "content"
    root.mkdir()
    (root / "guide.md").write_text(ORIGINAL)
    return root


@pytest.fixture
def publisher(content: Path) -> CountingTarget:
    return CountingTarget(content, BASE)


def job_awaiting_review(ledger: Ledger, draft_sha: str = SHA) -> JobRecord:
    job = ledger.submit_job("docs", PAGE, goal="refresh", trigger="t").job
    job = ledger.transition(job.job_id, JobState.compared, expected_version=job.version)
    job = ledger.transition(job.job_id, JobState.drafted, expected_version=job.version, draft_sha=draft_sha)
    job = ledger.transition(job.job_id, JobState.linked, expected_version=job.version)
    job = ledger.transition(job.job_id, JobState.validated, expected_version=job.version)
    return ledger.transition(job.job_id, JobState.awaiting_review, expected_version=job.version)


def approved_job(ledger: Ledger, draft_sha: str = SHA) -> tuple[JobRecord, int]:
    job = job_awaiting_review(ledger, draft_sha)
    ledger.request_approval(job.job_id, draft_sha)
    ledger.decide(job.job_id, draft_sha, Decision.approve, reviewer="ann", channel=Channel.cli)
    job = ledger.transition(job.job_id, JobState.approved, expected_version=job.version)
    fence = ledger.acquire_lease(job.job_id, "worker-1", timedelta(minutes=5))
    return job, fence


def test_publish_writes_once_and_records_the_facts_in_order(
    ledger: Ledger, publisher: CountingTarget, content: Path
) -> None:
    job, fence = approved_job(ledger)
    outcome = publish_once(ledger, publisher, job.job_id, SHA, DRAFT, fence)
    assert outcome.status == "applied" and outcome.key == effect_key(job.job_id, "publish", SHA)
    assert outcome.effect.status is EffectStatus.applied and outcome.target == "guide.md"
    assert (content / "guide.md").read_text() == ORIGINAL.replace("As of 2021", "As of 2026")
    assert publisher.writes == 1

    again = publish_once(ledger, publisher, job.job_id, SHA, DRAFT, fence)
    assert again.status == "already_applied" and again.revision == outcome.revision
    assert publisher.writes == 1
    assert (content / "guide.md").read_text().count("As of 2026") == 1

    kinds = [e.kind for e in ledger.evidence(job.job_id)]
    assert kinds == ["approval", "publish_request", "publish_response"]  # approved < written
    assert ledger.verify_chain(job.job_id).ok
    approval = ledger.get_approval(job.job_id, SHA)
    assert approval is not None and approval.decided_at is not None
    assert approval.decided_at <= outcome.effect.created_at
    published = ledger.transition(job.job_id, JobState.published, expected_version=fence)
    assert published.state is JobState.published


def test_no_approval_no_write(ledger: Ledger, publisher: CountingTarget, content: Path) -> None:
    job = job_awaiting_review(ledger)
    with pytest.raises(PolicyViolation, match="no 'approve' decision"):
        publish_once(ledger, publisher, job.job_id, SHA, DRAFT, job.version)
    ledger.decide(job.job_id, SHA, Decision.reject, reviewer="bob", channel=Channel.ui)
    with pytest.raises(PolicyViolation, match="no 'approve' decision"):
        publish_once(ledger, publisher, job.job_id, SHA, DRAFT, job.version)
    assert (content / "guide.md").read_text() == ORIGINAL
    assert publisher.writes == 0 and ledger.list_effects(job.job_id) == []


def test_approval_of_draft_a_never_publishes_draft_b(
    ledger: Ledger, publisher: CountingTarget, content: Path
) -> None:
    job, fence = approved_job(ledger, SHA)
    # The page changed after approval: the job goes back to drafting with draft B.
    job = ledger.transition(job.job_id, JobState.drafted, expected_version=fence, draft_sha=OTHER_SHA)
    with pytest.raises(PolicyViolation, match="no 'approve' decision"):
        publish_once(ledger, publisher, job.job_id, OTHER_SHA, OTHER_DRAFT, job.version)
    with pytest.raises(PolicyViolation, match="current draft"):
        publish_once(ledger, publisher, job.job_id, SHA, DRAFT, job.version)
    # Nor can A's approval carry B's edits under A's name.
    with pytest.raises(PolicyViolation):
        publish_once(ledger, publisher, job.job_id, SHA, OTHER_DRAFT, job.version)
    assert (content / "guide.md").read_text() == ORIGINAL
    assert publisher.writes == 0


def test_edits_that_do_not_match_the_approved_hash_are_refused(
    ledger: Ledger, publisher: CountingTarget, content: Path
) -> None:
    job, fence = approved_job(ledger)
    with pytest.raises(PolicyViolation, match="hashes to"):
        publish_once(ledger, publisher, job.job_id, SHA, OTHER_DRAFT, fence)
    wrong_page = Draft(page_url=BASE, edits=[EDIT], drafter="offline", prompt_version="v1")
    with pytest.raises(PolicyViolation):
        publish_once(ledger, publisher, job.job_id, SHA, wrong_page, fence)
    assert (content / "guide.md").read_text() == ORIGINAL


def test_crash_after_write_before_completion_is_reconciled_without_a_second_write(
    ledger: Ledger, publisher: CountingTarget, content: Path
) -> None:
    job, fence = approved_job(ledger)
    # The first attempt: intent written, side effect made, then the process died before completing.
    ledger.begin_effect(job.job_id, "publish", SHA, target="guide.md", fence=fence, request={"attempt": 1})
    publisher.apply(publisher.target_for(PAGE), DRAFT.edits, effect_key(job.job_id, "publish", SHA))
    assert publisher.writes == 1
    written = (content / "guide.md").read_text()

    outcome = publish_once(ledger, publisher, job.job_id, SHA, DRAFT, fence)
    assert outcome.status == "reconciled"
    assert outcome.effect.status is EffectStatus.reconciled
    assert publisher.writes == 1
    assert (content / "guide.md").read_text() == written
    assert written.count("As of 2026") == 1
    assert publish_once(ledger, publisher, job.job_id, SHA, DRAFT, fence).status == "already_applied"
    assert publisher.writes == 1


def test_crash_after_intent_before_write_applies_once(
    ledger: Ledger, publisher: CountingTarget, content: Path
) -> None:
    job, fence = approved_job(ledger)
    ledger.begin_effect(job.job_id, "publish", SHA, target="guide.md", fence=fence)
    outcome = publish_once(ledger, publisher, job.job_id, SHA, DRAFT, fence)
    assert outcome.status == "applied" and publisher.writes == 1
    assert "As of 2026" in (content / "guide.md").read_text()


def test_a_worker_that_lost_its_lease_cannot_publish(
    ledger: Ledger, publisher: CountingTarget, content: Path, clock: ManualClock
) -> None:
    job, fence = approved_job(ledger)
    clock.advance(timedelta(minutes=6))
    newer = ledger.acquire_lease(job.job_id, "worker-2", timedelta(minutes=5))
    with pytest.raises(StaleVersion):
        publish_once(ledger, publisher, job.job_id, SHA, DRAFT, fence)
    assert (content / "guide.md").read_text() == ORIGINAL and publisher.writes == 0
    assert publish_once(ledger, publisher, job.job_id, SHA, DRAFT, newer).status == "applied"


def test_a_conflicting_page_fails_the_effect_and_writes_nothing(
    ledger: Ledger, publisher: CountingTarget, content: Path
) -> None:
    job, fence = approved_job(ledger)
    (content / "guide.md").write_text("# Setup\n\nRewritten by a person meanwhile.\n")
    with pytest.raises(EditConflict):
        publish_once(ledger, publisher, job.job_id, SHA, DRAFT, fence)
    effect = ledger.get_effect(effect_key(job.job_id, "publish", SHA))
    assert (
        effect is not None and effect.status is EffectStatus.failed and "EditConflict" in (effect.error or "")
    )
    assert publisher.writes == 0


def test_only_an_approved_job_is_published(ledger: Ledger, publisher: CountingTarget) -> None:
    job = job_awaiting_review(ledger)
    ledger.decide(job.job_id, SHA, Decision.approve, reviewer="ann", channel=Channel.cli)
    with pytest.raises(PolicyViolation, match="only an approved job"):
        publish_once(ledger, publisher, job.job_id, SHA, DRAFT, job.version)
    assert publisher.writes == 0


def _git_work_tree(root: Path) -> Callable[..., str]:
    """Make ``root`` a git work tree with one commit; return a ``git(*args)`` that runs there."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
        ).stdout

    git("init", "--quiet")
    git("config", "user.name", "Test")
    git("config", "user.email", "test@example.test")
    git("add", ".")
    git("commit", "--quiet", "-m", "initial")
    return git


def test_git_reconcile_commits_what_the_crash_left_uncommitted(ledger: Ledger, content: Path) -> None:
    git = _git_work_tree(content)
    publisher = CountingTarget(content, BASE, git_commit=True)
    job, fence = approved_job(ledger)
    key = effect_key(job.job_id, "publish", SHA)
    ledger.begin_effect(job.job_id, "publish", SHA, target="guide.md", fence=fence)
    publisher._write(content / "guide.md", ORIGINAL.replace("As of 2021", "As of 2026"))  # died before commit
    outcome = publish_once(ledger, publisher, job.job_id, SHA, DRAFT, fence)
    assert outcome.status == "reconciled" and publisher.writes == 1
    assert outcome.revision == "git:" + git("rev-parse", "HEAD").strip()
    assert f"Idempotency-Key: {key}" in git("log", "-1", "--format=%B")
    assert git("status", "--porcelain") == ""


@pytest.mark.parametrize("git_commit", [True, False], ids=["git_commit", "no_git_commit"])
def test_a_job_publishes_through_git_when_its_inputs_say_so(
    ledger: Ledger, content: Path, git_commit: bool
) -> None:
    git = _git_work_tree(content)
    inputs = JobInputs(
        site_id="docs", base_url=BASE, page_url=PAGE, content_root=str(content), git_commit=git_commit
    )
    job, fence = approved_job(ledger)
    # The engine's publish step builds its publisher from the job's inputs (publisher_for).
    outcome = PlainSteps(retry_delays=()).publish(ledger, job.job_id, SHA, DRAFT, fence, inputs)
    assert outcome.status == "applied"
    assert (content / "guide.md").read_text() == ORIGINAL.replace("As of 2021", "As of 2026")
    commits = int(git("rev-list", "--count", "HEAD"))
    if git_commit:
        assert outcome.revision == "git:" + git("rev-parse", "HEAD").strip()
        assert commits == 2 and git("status", "--porcelain") == ""
        key = effect_key(job.job_id, "publish", SHA)
        assert f"Idempotency-Key: {key}" in git("log", "-1", "--format=%B")
    else:
        assert outcome.revision.startswith("sha256:")
        assert commits == 1 and git("status", "--porcelain").strip() == "M guide.md"
