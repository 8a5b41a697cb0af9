"""LLMDrafter and judge_claim against a real local OpenAI-protocol server, through the real openai client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import pytest
from pydantic import SecretStr

from sitesteward.compare import compare_page
from sitesteward.draft import DraftRequest, OfflineDrafter, build_draft_request
from sitesteward.errors import (
    ConfigurationError,
    InvalidModelOutput,
    LLMRateLimited,
    PolicyViolation,
    TransientError,
)
from sitesteward.llm import LLMDrafter, build_client, cost_usd, judge_claim, select_drafter
from sitesteward.models import PageData
from sitesteward.settings import Settings
from sitesteward.sources import cited_sources, snapshot_source
from sitesteward.validate import validate_draft
from tests.llm_server import FakeLLMServer, Reply

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
PAGE_URL = "https://blog.example.com/deploy-daily/"
SURVEY = "https://research.example.org/state-of-deployment"
SECRET = "sk-test-very-secret-value"


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


@pytest.fixture
def client(server: FakeLLMServer) -> Iterator[openai.OpenAI]:
    # Closed after the test: a pooled connection left to the garbage collector surfaces as an unclosed-
    # socket ResourceWarning in whichever later test the collection happens to run.
    with openai.OpenAI(base_url=server.url + "/v1", api_key=SECRET, max_retries=0, timeout=10) as running:
        yield running


@pytest.fixture
def request_42_to_57() -> DraftRequest:
    citations = cited_sources((FIXTURES / "page.html").read_text(), PAGE_URL, PageData())
    before = snapshot_source(
        SURVEY, (FIXTURES / "survey_v1.html").read_text(), retrieved_at=datetime(2024, 1, 1, tzinfo=UTC)
    )
    after = snapshot_source(
        SURVEY, (FIXTURES / "survey_v2.html").read_text(), retrieved_at=datetime(2024, 6, 1, tzinfo=UTC)
    )
    comparison = compare_page(PAGE_URL, "p", citations, [after], [before])
    return build_draft_request(
        PAGE_URL,
        (FIXTURES / "page.md").read_text(),
        comparison=comparison,
        sources=[after],
        site_hosts=["blog.example.com"],
    )


QUOTE = "As of 2024, 57% of teams deploy to production at least once a day, up from 35% three years earlier."


def _answer(new: str = "As of 2024, 57% of teams deploy", source_url: str | None = SURVEY) -> dict[str, Any]:
    return {
        "summary": "Updated the figure to the survey's 2024 value.",
        "edits": [
            {
                "kind": "replace_text",
                "old": "As of 2023, 42% of teams deploy",
                "new": new,
                "finding": "claim_unsupported",
                "justification": "The survey now reports 57%.",
                "source_url": source_url,
                "source_quote": QUOTE,
            }
        ],
    }


def test_llm_draft_updates_the_figure_with_the_quote(
    server: FakeLLMServer, client: openai.OpenAI, request_42_to_57: DraftRequest
) -> None:
    server.script(Reply.json(_answer(), prompt_tokens=1000, completion_tokens=200))
    result = LLMDrafter(client, "gpt-4o-mini").draft(request_42_to_57)
    (edit,) = result.draft.edits
    assert edit.new == "As of 2024, 57% of teams deploy" and edit.source_quote == QUOTE
    assert result.draft.drafter == "llm:gpt-4o-mini" and result.draft.page_url == PAGE_URL
    assert result.draft.warnings == []
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.calls) == (1000, 200, 1)
    assert result.usage.cost_usd == pytest.approx((1000 * 0.15 + 200 * 0.60) / 1e6)
    validation = validate_draft(
        result.draft,
        document_text=request_42_to_57.page_source,
        allowed_link_hosts=request_42_to_57.allowed_link_hosts(),
    )
    assert validation.ok
    updated = request_42_to_57.page_source.replace(edit.old, edit.new, 1)
    assert "As of 2024, 57% of teams deploy to production every day" in updated
    # the request the server saw: structured output, untrusted data fenced, no secret in the body
    (seen,) = server.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.body["response_format"]["type"] == "json_schema"
    assert seen.body["response_format"]["json_schema"]["strict"] is True
    user = seen.body["messages"][1]["content"]
    assert "<<<UNTRUSTED_DATA page source of" in user
    assert SECRET not in seen.raw
    assert seen.headers["authorization"] == f"Bearer {SECRET}"
    assert [k for k, v in seen.headers.items() if SECRET in v] == ["authorization"]


def test_same_inputs_same_key_so_a_cached_rerun_makes_no_call(
    server: FakeLLMServer, client: openai.OpenAI, request_42_to_57: DraftRequest
) -> None:
    cache: dict[str, object] = {}
    drafter = LLMDrafter(client, "gpt-4o-mini")
    server.script(Reply.json(_answer()))
    for _ in range(2):
        copy = DraftRequest.model_validate_json(request_42_to_57.model_dump_json())
        key = drafter.cache_key(copy)
        if key not in cache:
            cache[key] = drafter.draft(copy)
    assert server.calls == 1
    assert LLMDrafter(client, "gpt-4o").cache_key(request_42_to_57) not in cache  # model is in the key
    assert LLMDrafter(client, "gpt-4o-mini", "draft-v2").cache_key(request_42_to_57) not in cache


def test_responses_api_is_supported(
    server: FakeLLMServer, client: openai.OpenAI, request_42_to_57: DraftRequest
) -> None:
    server.script(Reply.json(_answer()))
    result = LLMDrafter(client, "gpt-4o-mini", api="responses").draft(request_42_to_57)
    assert result.draft.edits[0].new.startswith("As of 2024, 57%")
    assert server.requests[0].path == "/v1/responses"
    assert server.requests[0].body["text"]["format"]["type"] == "json_schema"


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (Reply.error(429, retry_after="7"), LLMRateLimited, 7.0),
        (Reply.error(503), LLMRateLimited, None),
        (Reply.error(500), TransientError, None),
        (Reply.error(502, retry_after="2"), TransientError, 2.0),
        (Reply.error(401), ConfigurationError, None),
        (Reply.error(404), ConfigurationError, None),
        (Reply.text('{"summary": "x", "edits": ['), InvalidModelOutput, None),
        (Reply.text("not json at all"), InvalidModelOutput, None),
        (Reply.json({"summary": "x"}), InvalidModelOutput, None),  # missing field
        (Reply.json({"summary": "x", "edits": [], "approve": True}), InvalidModelOutput, None),  # extra field
        (
            Reply.json(
                {
                    "summary": "x",
                    "edits": [
                        {
                            "kind": "publish",
                            "old": "a",
                            "new": "b",
                            "finding": "f",
                            "justification": "",
                            "source_url": None,
                            "source_quote": None,
                        }
                    ],
                }
            ),
            InvalidModelOutput,
            None,
        ),
        (Reply.refusal(), InvalidModelOutput, None),
        (Reply.truncated(), InvalidModelOutput, None),
    ],
)
def test_errors_map_to_the_steward_tree(
    server: FakeLLMServer,
    client: openai.OpenAI,
    request_42_to_57: DraftRequest,
    reply: Reply,
    error: type[Exception],
    retry_after: float | None,
) -> None:
    server.script(reply)
    with pytest.raises(error) as caught:
        LLMDrafter(client, "gpt-4o-mini").draft(request_42_to_57)
    assert server.calls == 1  # max_retries=0: exactly one attempt, retries belong to Prefect
    if isinstance(caught.value, TransientError):
        assert caught.value.retry_after == retry_after
    assert not isinstance(caught.value, openai.OpenAIError)
    assert isinstance(caught.value.__cause__, openai.OpenAIError) or error is InvalidModelOutput


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_errors_map_on_responses_api_too(
    server: FakeLLMServer, client: openai.OpenAI, request_42_to_57: DraftRequest, api: str
) -> None:
    server.script(Reply.refusal(), Reply.error(429, retry_after="3"))
    drafter = LLMDrafter(client, "gpt-4o-mini", api=api)  # type: ignore[arg-type]
    with pytest.raises(InvalidModelOutput):
        drafter.draft(request_42_to_57)
    with pytest.raises(LLMRateLimited):
        drafter.draft(request_42_to_57)


def test_slow_answer_times_out_as_transient(
    server: FakeLLMServer, client: openai.OpenAI, request_42_to_57: DraftRequest
) -> None:
    server.script(Reply.slow(1.5, Reply.json(_answer())))
    with pytest.raises(TransientError, match="timed out"):
        LLMDrafter(client, "gpt-4o-mini", timeout=0.3).draft(request_42_to_57)


def test_connection_refused_is_transient(request_42_to_57: DraftRequest) -> None:
    with FakeLLMServer() as gone:
        url = gone.url
    client = openai.OpenAI(base_url=url + "/v1", api_key="test", max_retries=0, timeout=2)
    with pytest.raises(TransientError, match="unreachable"):
        LLMDrafter(client, "gpt-4o-mini").draft(request_42_to_57)


@pytest.mark.parametrize(
    "new",
    [
        "As of 2024, 57% of teams deploy <script>fetch('https://evil.example.net')</script>",
        "As of 2024, 57% of teams deploy ([offer](https://evil.example.net/))",
        "As of 2024, 57% of teams deploy [x](javascript:alert(1))",
    ],
)
def test_injected_links_and_scripts_are_refused_by_the_validator(
    server: FakeLLMServer, client: openai.OpenAI, request_42_to_57: DraftRequest, new: str
) -> None:
    server.script(Reply.json(_answer(new=new)))
    result = LLMDrafter(client, "gpt-4o-mini").draft(request_42_to_57)
    with pytest.raises(PolicyViolation):
        validate_draft(
            result.draft,
            document_text=request_42_to_57.page_source,
            allowed_link_hosts=request_42_to_57.allowed_link_hosts(),
        )


def test_unknown_quote_is_a_warning(
    server: FakeLLMServer, client: openai.OpenAI, request_42_to_57: DraftRequest
) -> None:
    answer = _answer()
    answer["edits"][0]["source_quote"] = "A quote nobody retrieved."
    server.script(Reply.json(answer))
    result = LLMDrafter(client, "gpt-4o-mini").draft(request_42_to_57)
    assert any("not among the retrieved quotes" in w for w in result.draft.warnings)


def test_judge_claim_checks_the_quote(server: FakeLLMServer, client: openai.OpenAI) -> None:
    source = snapshot_source(SURVEY, (FIXTURES / "survey_v2.html").read_text())
    verdict = {"supported": False, "quote": QUOTE, "replacement": "57%", "rationale": "now 57%"}
    server.script(Reply.json(verdict), Reply.json({**verdict, "quote": "made up words"}))
    check = judge_claim(client, "gpt-4o-mini", "42% of teams deploy daily.", source)
    assert (check.method, check.supported, check.source_quote, check.replacement) == (
        "llm",
        False,
        QUOTE,
        "57%",
    )
    with pytest.raises(InvalidModelOutput, match="does not occur"):
        judge_claim(client, "gpt-4o-mini", "42% of teams deploy daily.", source)
    body = json.dumps(server.requests[0].body)
    assert "UNTRUSTED_DATA" in body


def test_build_client_and_select_drafter(server: FakeLLMServer) -> None:
    assert build_client(Settings()) is None
    assert isinstance(select_drafter(Settings()), OfflineDrafter)
    settings = Settings(llm_api_key=SecretStr(SECRET), llm_base_url=server.url + "/v1", llm_model="gpt-4o")
    client = build_client(settings)
    assert client is not None and client.max_retries == 0
    drafter = select_drafter(settings)
    assert isinstance(drafter, LLMDrafter) and drafter.name == "llm:gpt-4o"
    assert SECRET not in repr(settings) and SECRET not in settings.model_dump_json()


def test_cost_table() -> None:
    prices = {"gpt-4o-mini": (0.15, 0.60)}
    assert cost_usd("gpt-4o-mini", 1_000_000, 0, prices) == pytest.approx(0.15)
    assert cost_usd("gpt-4o-mini-2024-07-18", 0, 1_000_000, prices) == pytest.approx(0.60)
    assert cost_usd("local-llama", 10_000, 10_000, prices) == 0.0


def test_offline_and_llm_drafts_agree_on_the_figure(
    server: FakeLLMServer, client: openai.OpenAI, request_42_to_57: DraftRequest
) -> None:
    offline = OfflineDrafter().draft(request_42_to_57).draft
    server.script(Reply.json(_answer()))
    online = LLMDrafter(client, "gpt-4o-mini").draft(request_42_to_57).draft

    def apply(edits: list[Any]) -> str:
        document = request_42_to_57.page_source
        for edit in edits:
            if edit.kind == "replace_text":
                document = document.replace(edit.old, edit.new, 1)
        return document

    for document in (apply(offline.edits), apply(online.edits)):
        assert "As of 2024, 57% of teams deploy to production every day" in document
