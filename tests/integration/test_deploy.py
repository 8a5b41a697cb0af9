"""Running sitesteward as a Prefect project: ``prefect.yaml``, bootstrap, ``prefect deploy --all``, and the
suspend → resume approval round trip through the API and the CLI (no browser; see ``tests/e2e``).

The servers here are real ``prefect server start`` processes on SQLite (the ``refresh-page`` deployment is
served by ``python -m deployments.serve``), because suspending a run needs a deployment and a process that
picks the resumed run up again.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from deployments import PREFECT_YAML, WORK_POOL
from deployments.serve import load_specs
from flows.audit_shard import ShardParams
from flows.audit_site import AuditParams
from flows.refresh_batch import RefreshBatchParams
from flows.refresh_page import RefreshParams
from flows.refresh_site import RefreshSiteParams
from flows.sweep_jobs import SweepParams
from sitesteward.ledger import Channel, Decision, JobState
from sitesteward.models import Edit
from sitesteward.publish import apply_edits
from tests.e2e.conftest import (
    PREFECT,
    ROOT,
    Stack,
    deployment_stack,
    is_completed,
    is_suspended,
    prefect_server,
    read_run,
    start_job_run,
    talking_to,
    use_stack_data_dir,
    wait_for_run,
)

MODELS: dict[str, type[BaseModel]] = {
    "audit-nightly": AuditParams,
    "refresh-weekly": RefreshSiteParams,
    "sweep-jobs": SweepParams,
    "refresh-page": RefreshParams,
    "refresh-batch": RefreshBatchParams,
    "audit-shard": ShardParams,
}
SITESTEWARD = str(Path(PREFECT).with_name("sitesteward"))
VARIABLES = {"site_url": "https://www.example.com/", "site_content_root": "/srv/site/content"}


def _substitute(value: Any, variables: dict[str, str]) -> Any:
    """Resolve ``{{ prefect.variables.X }}`` placeholders like ``prefect deploy`` does (whole-string)."""
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    if isinstance(value, str) and value.startswith("{{ prefect.variables."):
        return variables[value.removeprefix("{{ prefect.variables.").removesuffix(" }}")]
    return value


def _post(api_url: str, path: str, body: dict[str, Any]) -> Any:
    with httpx.Client(base_url=api_url, timeout=10.0) as api:
        response = api.post(path, json=body)
        response.raise_for_status()
        return response.json()


# ----------------------------------------------------------------------------------- prefect.yaml alone


def test_prefect_yaml_lists_six_deployments_whose_parameters_validate() -> None:
    specs = {spec.name: spec for spec in load_specs()}
    assert set(specs) == set(MODELS)
    for name, model in MODELS.items():
        if name == "refresh-batch":
            # Every run names its jobs (refresh_site with batch_size starts these runs).
            assert specs[name].parameters == {} and specs[name].schedules == []
            model.model_validate({"job_ids": ["some-job"]})
            continue
        if name == "audit-shard":
            # Every run is one shard that audit_site planned; nothing to default.
            assert specs[name].parameters == {} and specs[name].schedules == []
            continue
        params = _substitute(specs[name].parameters, VARIABLES)["params"]
        if name == "refresh-page":
            # A run supplies the job; the rest of the defaults must still validate.
            params = {**params, "job_id": "some-job"}
            assert model.model_validate(params).approval == "suspend"  # type: ignore[attr-defined]
        else:
            model.model_validate(params)
    weekly = RefreshSiteParams.model_validate(
        _substitute(specs["refresh-weekly"].parameters, VARIABLES)["params"]
    )
    assert weekly.audit.crawl.start_urls == [VARIABLES["site_url"]]
    assert weekly.content_root == VARIABLES["site_content_root"]
    assert 0 < weekly.budget <= 50
    assert [s.cron for s in specs["audit-nightly"].schedules] == ["15 2 * * *"]
    assert [s.cron for s in specs["refresh-weekly"].schedules] == ["0 6 * * 1"]
    assert [s.interval for s in specs["sweep-jobs"].schedules] == [300]
    assert specs["refresh-page"].schedules == []


def test_prefect_yaml_pool_and_pull_steps() -> None:
    import yaml

    document = yaml.safe_load(PREFECT_YAML.read_text())
    assert document["definitions"]["work_pools"]["process"]["name"] == WORK_POOL
    assert all(item["work_pool"]["name"] == WORK_POOL for item in document["deployments"])
    (pull,) = document["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ project-dir.stdout }}"
    assert "git_clone" in PREFECT_YAML.read_text()  # the commented alternative stays documented


# --------------------------------------------------------------------- bootstrap + prefect deploy --all


@pytest.mark.slow
@pytest.mark.prefect
def test_bootstrap_then_deploy_all_schedules_the_deployments(tmp_path: Path) -> None:
    from deployments.bootstrap import bootstrap

    with prefect_server(tmp_path / "prefect-home", ui=False) as server:
        with talking_to(server.api_url):
            first = bootstrap(site_url="http://127.0.0.1:8765/", content_root=tmp_path)
            again = bootstrap(site_url="http://other.invalid/")
        assert f"work-pool:{WORK_POOL}" in first.created and "variable:site_url" in first.created
        assert again.created == [] and set(again.existing) == set(first.created)

        deploy = subprocess.run(
            [PREFECT, "--no-prompt", "deploy", "--all"],
            cwd=ROOT,
            env=server.client_env(tmp_path / "data"),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]

        deployments = {d["name"]: d for d in _post(server.api_url, "/deployments/filter", {})}
        assert set(deployments) == set(MODELS)
        for name, deployment in deployments.items():
            assert deployment["work_pool_name"] == WORK_POOL, name
            assert deployment["pull_steps"] == [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
            ]
        nightly = deployments["audit-nightly"]
        # The variable bootstrap created was resolved into the stored parameters.
        assert nightly["parameters"]["params"]["crawl"]["start_urls"] == ["http://127.0.0.1:8765/"]
        assert deployments["refresh-weekly"]["parameters"]["params"]["content_root"] == str(tmp_path)
        schedules = {name: [s["schedule"] for s in d["schedules"]] for name, d in deployments.items()}
        assert schedules["audit-nightly"][0]["cron"] == "15 2 * * *"
        assert schedules["refresh-weekly"][0]["cron"] == "0 6 * * 1"
        assert schedules["sweep-jobs"][0]["interval"] == 300
        assert schedules["refresh-page"] == schedules["refresh-batch"] == schedules["audit-shard"] == []

        # The scheduler service fills in the next runs of the three scheduled deployments.
        scheduled_ids = {deployments[n]["id"] for n in ("audit-nightly", "refresh-weekly", "sweep-jobs")}
        deadline = time.monotonic() + 60
        while True:
            runs = _post(
                server.api_url,
                "/flow_runs/filter",
                {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}},
            )
            have = {run["deployment_id"] for run in runs}
            if scheduled_ids <= have:
                break
            assert time.monotonic() < deadline, f"no scheduled runs for {scheduled_ids - have}"
            time.sleep(1)
        assert deployments["refresh-page"]["id"] not in have


# ------------------------------------------------------------------------ suspend → resume round trips


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with deployment_stack(tmp_path_factory.mktemp("deploy-stack"), ui=False) as running:
        yield running


@pytest.fixture
def on_stack(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    use_stack_data_dir(stack, monkeypatch)
    return stack


def _suspend(stack: Stack, path: str) -> tuple[str, Any, str]:
    """Run the page's job through the served deployment until it suspends for review."""
    job_id = stack.job_for(path)
    run_id = start_job_run(job_id)
    wait_for_run(run_id, is_suspended, "suspended for review")
    job = stack.job(job_id)
    assert job.state is JobState.awaiting_review, job
    assert job.flow_run_id == str(run_id)
    approval = stack.approval(job_id)
    assert approval is not None and approval.pending
    return job_id, run_id, job.draft_sha or ""


def _expected_after_publish(stack: Stack, job_id: str, original: str) -> str:
    ledger = stack.ledger()
    try:
        draft = ledger.latest_evidence(job_id, "draft")
    finally:
        ledger.close()
    assert draft is not None
    edits = [Edit.model_validate(edit) for edit in draft.payload["draft"]["edits"]]
    assert edits
    return apply_edits(original, edits)


def _assert_published_once(stack: Stack, job_id: str, relative: str, original: str) -> None:
    job = stack.job(job_id)
    assert job.state is JobState.monitoring, (job.state, job.failure_reason)
    ledger = stack.ledger()
    try:
        effects = ledger.list_effects(job_id)
    finally:
        ledger.close()
    assert len(effects) == 1 and effects[0].status.value in {"applied", "reconciled"}, effects
    expected = _expected_after_publish(stack, job_id, original)
    assert expected != original
    assert stack.markdown(relative) == expected


@pytest.mark.slow
@pytest.mark.prefect
def test_suspended_run_resumed_through_the_api_publishes_once(on_stack: Stack) -> None:
    from prefect.flow_runs import resume_flow_run

    original = on_stack.markdown("why-static.md")
    job_id, run_id, _ = _suspend(on_stack, "/why-static/")
    assert on_stack.markdown("why-static.md") == original  # nothing written before a decision

    resume_flow_run(run_id, run_input={"decision": "approve", "reviewer": "Dana Reviewer", "notes": "ok"})
    wait_for_run(run_id, is_completed, "completed after resume")

    approval = on_stack.approval(job_id)
    assert approval is not None
    assert (approval.decision, approval.reviewer, approval.channel) == (
        Decision.approve,
        "Dana Reviewer",
        Channel.ui,
    )
    assert approval.notes == "ok"
    _assert_published_once(on_stack, job_id, "why-static.md", original)


@pytest.mark.slow
@pytest.mark.prefect
def test_forged_resume_inputs_are_refused_and_publish_nothing(on_stack: Stack) -> None:
    from prefect.flow_runs import resume_flow_run

    original = on_stack.markdown("guides/forms.md")
    job_id, run_id, _ = _suspend(on_stack, "/guides/forms/")
    other_sha = on_stack.job(on_stack.job_for("/why-static/")).draft_sha or "0" * 64
    forged: list[dict[str, Any]] = [
        # an unknown field: "approve that other job's draft"
        {"decision": "approve", "reviewer": "mallory", "notes": "", "draft_sha": other_sha},
        {"decision": "yes", "reviewer": "mallory", "notes": ""},  # not a decision
        {"decision": "approve", "notes": ""},  # nobody to record
        {"decision": "approve", "reviewer": "", "notes": ""},  # an empty name
    ]
    for run_input in forged:
        with pytest.raises(RuntimeError, match="Cannot resume"):
            resume_flow_run(run_id, run_input=run_input)
        assert is_suspended(read_run(run_id)), run_input
    time.sleep(5)  # longer than the runner's poll: nothing was rescheduled behind our back
    assert is_suspended(read_run(run_id))
    approval = on_stack.approval(job_id)
    assert approval is not None and approval.pending
    assert on_stack.markdown("guides/forms.md") == original

    # A well-formed rejection ends it: rejected, still nothing written.
    resume_flow_run(run_id, run_input={"decision": "reject", "reviewer": "Dana Reviewer", "notes": "no"})
    wait_for_run(run_id, is_completed, "completed after the rejection")
    job = on_stack.job(job_id)
    assert job.state is JobState.rejected
    assert on_stack.markdown("guides/forms.md") == original
    ledger = on_stack.ledger()
    try:
        assert ledger.list_effects(job_id) == []
    finally:
        ledger.close()


@pytest.mark.slow
@pytest.mark.prefect
def test_cli_approve_resumes_a_suspended_run(on_stack: Stack) -> None:
    original = on_stack.markdown("support.md")
    job_id, run_id, _ = _suspend(on_stack, "/support/")

    result = subprocess.run(
        [
            str(Path(PREFECT).with_name("sitesteward")),
            "approve",
            job_id,
            "--reviewer",
            "Carol",
            "--notes",
            "cli",
        ],
        cwd=ROOT,
        env=on_stack.server.client_env(on_stack.data_dir),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resumed flow run {run_id}" in " ".join(result.stdout.split())
    wait_for_run(run_id, is_completed, "completed after `sitesteward approve`")

    approval = on_stack.approval(job_id)
    assert approval is not None
    # The CLI wrote the ledger first; the flow's own record of the resume did not overwrite it.
    assert (approval.decision, approval.reviewer, approval.channel) == (
        Decision.approve,
        "Carol",
        Channel.cli,
    )
    _assert_published_once(on_stack, job_id, "support.md", original)
