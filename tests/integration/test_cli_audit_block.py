"""`sitesteward audit --site-block NAME`: the crawl comes from a SiteConfig block; bad names are one line."""

from __future__ import annotations

import uuid

import pytest
from typer.testing import CliRunner

from sitesteward.cli import app
from tests.integration.conftest import Demo

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_api")]


def _audit(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["audit", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_an_unknown_block_is_a_one_line_configuration_error() -> None:
    code, output = _audit("--site-block", "no-such-site", "--json")
    assert code == 2, output
    assert "unknown SiteConfig block 'no-such-site'" in " ".join(output.split())


def test_a_url_or_a_block_but_not_both_nor_neither(demo: Demo) -> None:
    for args in ((), (demo.site.base_url + "/", "--site-block", "x")):
        code, output = _audit(*args)
        assert code == 2 and "one of the two" in output, output


def test_the_block_names_the_site_and_its_budget(demo: Demo) -> None:
    from blocks.site import SiteConfig

    name = f"cli-site-{uuid.uuid4().hex[:8]}"
    SiteConfig(base_url=demo.site.base_url + "/", allow_private=True, max_pages=3).save(name)
    code, output = _audit("--site-block", name, "--json")
    assert code == 0, output
    assert '"pages": 3' in output  # the block's budget, not the CLI's default of 10,000
