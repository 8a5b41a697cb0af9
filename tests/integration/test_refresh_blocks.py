"""`refresh_site` by block names: the content target and the model come from blocks, not parameters."""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr, ValidationError

from flows.refresh_site import refresh_site
from sitesteward.errors import ConfigurationError
from sitesteward.ledger import Ledger
from sitesteward.settings import get_settings
from tests.durability.harness import llm_answer
from tests.integration.conftest import Demo
from tests.llm_server import FakeLLMServer

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_api")]


def test_exactly_one_of_content_root_or_target_block(demo: Demo) -> None:
    with pytest.raises(ValidationError, match="exactly one of content_root or target_block"):
        demo.params(content_root=None)
    with pytest.raises(ValidationError, match="exactly one of content_root or target_block"):
        demo.params(target_block="site-content")


def test_an_unknown_target_block_is_a_one_line_configuration_error(demo: Demo) -> None:
    with pytest.raises(ConfigurationError, match=r"^unknown MarkdownContentTarget block 'no-such'") as error:
        refresh_site(demo.params(content_root=None, target_block="no-such", budget=1))
    assert "\n" not in str(error.value)


def test_the_target_and_the_model_come_from_their_blocks(demo: Demo) -> None:
    from blocks.content import MarkdownContentTarget
    from blocks.llm import LLMConfig

    suffix = uuid.uuid4().hex[:8]
    # git_commit reaches every job's inputs (the jobs here park at review: nothing is committed yet).
    MarkdownContentTarget(
        content_root=str(demo.root), base_url=demo.site.base_url + "/", git_commit=True
    ).save(f"content-{suffix}")
    with FakeLLMServer() as llm:
        llm.script(*[llm_answer(demo.sources.base_url) for _ in range(20)])
        LLMConfig(base_url=llm.url + "/v1", model="model-from-block", api_key=SecretStr("sk-block")).save(
            f"llm-{suffix}"
        )
        # The process itself has no key: without the block the offline drafter would answer.
        assert get_settings().llm_api_key is None
        summary = refresh_site(
            demo.params(content_root=None, target_block=f"content-{suffix}", llm_block=f"llm-{suffix}")
        )
        waiting = [job.job_id for job in summary.jobs if job.state == "awaiting_review"]
        assert waiting and llm.calls >= 1
        assert all(r.headers.get("authorization") == "Bearer sk-block" for r in llm.requests)
        assert {r.body.get("model") for r in llm.requests} == {"model-from-block"}
    with Ledger.open(get_settings().ledger_url) as ledger:
        job = ledger.get_job(waiting[0])
        assert job.inputs["content_root"] == str(demo.root)  # the block's directory is the publish target
        assert job.inputs["git_commit"] is True  # and its git_commit how the job publishes
        drafts = ledger.evidence(job.job_id, "draft")
        assert drafts and drafts[-1].payload["drafter"] == "llm:model-from-block"
