"""SIGKILL the worker at every step boundary, re-run, and check the job ends as an uninterrupted one would.

The quick subset (the two points that matter most: after the model answered, and after the publish
write but before its checkpoint) runs by default; the full matrix is marked ``slow`` (CI runs it).
"""

from __future__ import annotations

import pytest

from sitesteward.ledger import JobState
from tests.durability.harness import AFTER_REVIEW, BEFORE_REVIEW, Scenario

pytestmark = pytest.mark.prefect

QUICK = {"after_draft_task", "after_publish_write"}


def _matrix() -> list[object]:
    return [
        pytest.param(point, marks=() if point in QUICK else pytest.mark.slow, id=point)
        for point in (*BEFORE_REVIEW, *AFTER_REVIEW)
    ]


@pytest.mark.scenario(
    name="kill matrix: SIGKILL at every step boundary (after the lease, each step's task and commit, the "
    "page-source checkpoint, the approval request, before/after the publish intent and write, before and "
    "after verification; the UI decision point is covered by tests/integration/test_deploy.py)",
    faults="one SIGKILL of the worker process per run at the named fault point, then re-runs",
    checks="ends monitoring like the uninterrupted run; one applied edit for the approved draft hash; "
    "approved < written <= verified; one approval request; one model call; evidence chain intact; the "
    "model key only in the model's Authorization header (no prompt, no file of the data directory)",
)
@pytest.mark.parametrize("point", _matrix())
def test_kill_at_a_step_boundary_then_rerun(scenario: Scenario, point: str) -> None:
    before_review = point in BEFORE_REVIEW
    scenario.run_until(JobState.awaiting_review, point if before_review else None)
    if before_review:
        assert scenario.runs[0] == (point, -9), f"fault point {point} was never reached: {scenario.runs}"
    scenario.approve()
    scenario.run_until(JobState.monitoring, None if before_review else point)
    if not before_review:
        assert (point, -9) in scenario.runs, f"fault point {point} was never reached: {scenario.runs}"
    scenario.check_invariants()


@pytest.mark.scenario(
    name="uninterrupted run (the reference end state)",
    faults="none",
    checks="one run parks at review, one more ends monitoring; every invariant holds",
)
def test_uninterrupted_run_for_reference(scenario: Scenario) -> None:
    scenario.run_until(JobState.awaiting_review, None)
    assert scenario.runs == [(None, 0)]  # one run parks the job for review
    scenario.approve()
    scenario.run_until(JobState.monitoring, None)
    assert scenario.runs == [(None, 0), (None, 0)]
    scenario.check_invariants()
