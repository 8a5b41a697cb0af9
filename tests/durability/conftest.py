"""Fixtures for crash scenarios: servers on loopback, a counting LLM, the shared Prefect API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sitesteward.cli import EXAMPLES, _prepare_demo_site
from sitesteward.demo.server import SiteServer, SourcesServer
from tests.durability.harness import Scenario, llm_answer
from tests.llm_server import FakeLLMServer


@pytest.fixture
def scenario(tmp_path: Path, prefect_api: None) -> Iterator[Scenario]:
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    assert api_url, "the Prefect test harness did not expose its API URL"
    with SourcesServer(EXAMPLES / "sources") as sources, FakeLLMServer() as llm:
        root = tmp_path / "site"
        _prepare_demo_site(root, sources.base_url)
        # One good answer; a second call would get a 500 and be counted.
        llm.script(llm_answer(sources.base_url))
        with SiteServer(root, sources_url=sources.base_url) as site:
            current = Scenario(root=root, site=site, sources=sources, llm=llm, api_url=str(api_url))
            current.plan()
            yield current
