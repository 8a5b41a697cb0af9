"""The Block types: Prefect's block standards, save/load round trips, registration and bootstrap."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites.blocks import BlockStandardTestSuite
from pydantic import SecretStr, ValidationError

from blocks import BLOCK_TYPES, LLMConfig, MarkdownContentTarget, SiteConfig
from sitesteward.errors import ConfigurationError, PolicyViolation
from sitesteward.models import AuditThresholds, CrawlConfig
from sitesteward.publish import MarkdownContentTarget as MarkdownPublisher
from sitesteward.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))


@pytest.mark.parametrize("block_type", BLOCK_TYPES, ids=lambda b: b.__name__)
class TestBlockStandards(BlockStandardTestSuite):
    """Prefect's own checks: description, documentation URL, described fields, a code example."""

    @pytest.fixture
    def block(self, block_type: type[Block]) -> type[Block]:
        return block_type

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # The standard check downloads the logo; these blocks have none (the UI shows its default icon)
        # and the tests never leave loopback.
        assert block._logo_url is None
        pytest.skip("no logo to download: the blocks use the UI's default icon")


# ------------------------------------------------------------------------------ behaviour, no server


def test_site_config_builds_the_domain_crawl_config_and_thresholds() -> None:
    site = SiteConfig(
        base_url="https://www.example.com/docs/",
        sitemaps=["https://www.example.com/sitemap-docs.xml"],
        include=[r"^https://www\.example\.com/docs/"],
        exclude=[r"/drafts/"],
        max_pages=300,
        concurrency_per_host=2,
        requests_per_second=1.5,
        thresholds=AuditThresholds(title_max=70),
    )
    crawl = site.crawl_config(max_depth=4)
    assert isinstance(crawl, CrawlConfig)
    assert crawl.start_urls == ["https://www.example.com/docs/"]
    assert crawl.sitemaps == ["https://www.example.com/sitemap-docs.xml"]
    assert (crawl.include, crawl.exclude) == ([r"^https://www\.example\.com/docs/"], [r"/drafts/"])
    assert (crawl.max_pages, crawl.concurrency_per_host, crawl.requests_per_second) == (300, 2, 1.5)
    assert crawl.max_depth == 4
    assert crawl.allow_private is None  # defer to settings unless the block allows it explicitly
    assert site.audit_thresholds() == AuditThresholds(title_max=70)
    with pytest.raises(ValidationError):
        site.crawl_config(not_a_crawl_field=1)
    with pytest.raises(ValidationError):
        SiteConfig(base_url="https://example.com/", concurrency_per_host=0)


def test_llm_config_overrides_only_the_llm_settings_and_hides_its_key() -> None:
    settings = Settings(llm_model="gpt-4o-mini", approve_all=True)
    llm = LLMConfig(base_url="http://127.0.0.1:9/v1", model="local-model", api_key=SecretStr("sk-test-1234"))
    applied = llm.apply_to(settings)
    assert (applied.llm_base_url, applied.llm_model) == ("http://127.0.0.1:9/v1", "local-model")
    assert applied.llm_api_key is not None and applied.llm_api_key.get_secret_value() == "sk-test-1234"
    assert applied.approve_all is True and settings.llm_model == "gpt-4o-mini"  # a copy
    assert "sk-test-1234" not in repr(llm) and "sk-test-1234" not in str(llm.model_dump())
    assert "api_key" in LLMConfig.model_json_schema()["secret_fields"]


def test_markdown_target_block_builds_the_publisher(tmp_path: Path) -> None:
    (tmp_path / "pricing.md").write_text("---\ntitle: Pricing\n---\nPlans.\n")
    block = MarkdownContentTarget(content_root=str(tmp_path), base_url="https://www.example.com/")
    publisher = block.publisher()
    assert isinstance(publisher, MarkdownPublisher) and publisher.git_commit is False
    assert publisher.target_for("https://www.example.com/pricing/").location == "pricing.md"
    with pytest.raises(PolicyViolation):
        publisher.target_for("https://evil.example.net/pricing/")
    with pytest.raises(ConfigurationError):
        MarkdownContentTarget(
            content_root=str(tmp_path / "missing"), base_url="https://x.example/"
        ).publisher()


# ---------------------------------------------------------------------------- against a Prefect API


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_api")
def test_blocks_round_trip_through_the_api(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    suffix = uuid4().hex[:8]
    site = SiteConfig(base_url="http://127.0.0.1:8765/", allow_private=True, exclude=["/private/"])
    llm = LLMConfig(model="local-model", api_key=SecretStr("sk-round-trip-secret"), max_tokens_per_job=1234)
    target = MarkdownContentTarget(
        content_root=str(tmp_path), base_url="http://127.0.0.1:8765/", git_commit=True
    )
    for name, block in ((f"site-{suffix}", site), (f"llm-{suffix}", llm), (f"target-{suffix}", target)):
        block.save(name)

    loaded_site = SiteConfig.load(f"site-{suffix}")
    assert loaded_site.crawl_config() == site.crawl_config()
    assert loaded_site.crawl_config().allow_private is True
    loaded_llm = LLMConfig.load(f"llm-{suffix}")
    assert loaded_llm.api_key is not None and loaded_llm.api_key.get_secret_value() == "sk-round-trip-secret"
    assert (loaded_llm.model, loaded_llm.max_tokens_per_job) == ("local-model", 1234)
    loaded_target = MarkdownContentTarget.load(f"target-{suffix}")
    assert (loaded_target.content_root, loaded_target.git_commit) == (str(tmp_path), True)

    # Read back without secrets (what the UI and `prefect block inspect` get): the key is obfuscated.
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(
            name=f"llm-{suffix}", block_type_slug=LLMConfig.get_block_type_slug(), include_secrets=False
        )
    assert "sk-round-trip-secret" not in str(document.data)

    # Saving under an existing name without overwrite is refused: a default never clobbers an edit.
    with pytest.raises(ValueError):
        SiteConfig(base_url="https://other.example/").save(f"site-{suffix}")
    assert SiteConfig.load(f"site-{suffix}").base_url == "http://127.0.0.1:8765/"


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_api")
def test_prefect_block_register_finds_the_three_types() -> None:
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_API_URL=str(PREFECT_API_URL.value()), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    result = subprocess.run(
        [PREFECT, "block", "register", "-m", "blocks"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = " ".join(result.stdout.split())
    assert "Successfully registered 3 blocks" in output, output
    for block_type in BLOCK_TYPES:
        assert block_type.get_block_type_name() in output


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_api")
def test_bootstrap_is_idempotent(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    from deployments import WORK_POOL
    from deployments.bootstrap import DEFAULT_LLM_BLOCK, EXAMPLE_BLOCK, bootstrap

    first = bootstrap(content_root=tmp_path)
    second = bootstrap(site_url="https://changed.example/")
    everything = {
        f"work-pool:{WORK_POOL}",
        f"block:{SiteConfig.get_block_type_slug()}/{EXAMPLE_BLOCK}",
        f"block:{LLMConfig.get_block_type_slug()}/{DEFAULT_LLM_BLOCK}",
        f"block:{MarkdownContentTarget.get_block_type_slug()}/{EXAMPLE_BLOCK}-content",
        "variable:site_url",
        "variable:site_content_root",
    }
    assert set(first.created) | set(first.existing) == everything
    assert second.created == [] and set(second.existing) == everything
    # The second run's different site URL did not overwrite anything.
    assert SiteConfig.load(EXAMPLE_BLOCK).base_url != "https://changed.example/"
    with get_client(sync_client=True) as client:
        assert client.read_work_pool(WORK_POOL).type == "process"
        variable = client.read_variable_by_name("site_url")
    assert variable is not None and variable.value != "https://changed.example/"
