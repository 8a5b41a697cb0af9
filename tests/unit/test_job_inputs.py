"""Job inputs: ``git_commit`` reaches the publisher, and jobs recorded before it existed keep their keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sitesteward.engine.keys import stable_hash
from sitesteward.engine.steps import publisher_for
from sitesteward.jobs import JobInputs
from sitesteward.ledger.evidence import canonical_json

#: A job's inputs as the ledger stored them before ``git_commit`` existed (JSON mode, every field set).
RECORDED: dict[str, Any] = {
    "site_id": "docs",
    "base_url": "https://docs.example.test/",
    "page_url": "https://docs.example.test/guide/",
    "content_root": "/srv/site/content",
    "findings": [
        {
            "code": "stale_date",
            "severity": "warning",
            "url": "https://docs.example.test/guide/",
            "target": None,
            "detail": "as of 2021",
        }
    ],
    "allow_private": False,
    "max_links": 2,
}
#: ``stable_hash("compare", "job-1", RECORDED, "baseline-job", "2026-11-29.1")`` before the upgrade.
RECORDED_COMPARE_KEY = "cb34b62e9e17615a240bb44d9f63f011b51d40500340ce04d5984a66ff25eaf5"


def _compare_key(inputs: object) -> str:
    # The engine's compare key (sitesteward/engine/job.py), with the code version pinned.
    return stable_hash("compare", "job-1", inputs, "baseline-job", "2026-11-29.1")


def test_a_job_recorded_before_git_commit_keeps_its_inputs_and_step_keys() -> None:
    assert _compare_key(RECORDED) == RECORDED_COMPARE_KEY
    loaded = JobInputs.model_validate(RECORDED)  # what a runner builds from the stored record
    assert loaded.git_commit is False
    for inputs in (loaded, JobInputs.model_validate({**RECORDED, "git_commit": False})):
        assert _compare_key(inputs) == RECORDED_COMPARE_KEY
        assert inputs.model_dump(mode="json") == RECORDED
        assert json.loads(inputs.model_dump_json()) == RECORDED
        assert canonical_json(inputs) == canonical_json(RECORDED)  # what the ledger stores


def test_git_commit_true_is_recorded_and_read_back() -> None:
    inputs = JobInputs.model_validate({**RECORDED, "git_commit": True})
    stored = json.loads(canonical_json(inputs))
    assert stored == {**RECORDED, "git_commit": True}
    assert JobInputs.model_validate(stored).git_commit is True
    assert _compare_key(inputs) != RECORDED_COMPARE_KEY


def test_the_publisher_of_a_job_commits_only_when_its_inputs_say_so(tmp_path: Path) -> None:
    content = {**RECORDED, "content_root": str(tmp_path)}
    assert publisher_for(JobInputs.model_validate(content)).git_commit is False
    assert publisher_for(JobInputs.model_validate({**content, "git_commit": True})).git_commit is True
