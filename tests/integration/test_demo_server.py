"""The demo servers on loopback: rendering, redirects, validators, robots, sitemap, live edits, safety.

Every test serves a *copy* of ``examples/site`` from ``tmp_path``; the bundled site is never modified.
"""

from __future__ import annotations

import email.utils
import http.client
import os
import shutil
import urllib.robotparser
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from lxml import etree
from lxml import html as lxml_html

from sitesteward.content import Document
from sitesteward.demo import (
    EXAMPLE_SITE_ROOT,
    EXAMPLE_SOURCES_ROOT,
    SiteServer,
    SourcesServer,
    render_page,
    serve_demo,
)
from sitesteward.demo.render import UNRESOLVED_SOURCES_URL

SECRET = "SECRET OUTSIDE THE ROOT"
SURVEY = "/reports/static-sites-survey"


def _copy_site(base: Path) -> Path:
    root = base / "site"
    shutil.copytree(EXAMPLE_SITE_ROOT, root)
    # Files next to the root that a traversal would reach.
    (base / "secret.md").write_text(f"---\ntitle: {SECRET}\n---\n# {SECRET}\n", encoding="utf-8")
    (base / "secret.txt").write_text(SECRET, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SiteServer, SourcesServer]]:
    """One demo for the tests that only read (a copy of the site, never the bundled one)."""
    with serve_demo(_copy_site(tmp_path_factory.mktemp("demo")), EXAMPLE_SOURCES_ROOT) as servers:
        yield servers


@pytest.fixture
def site(shared: tuple[SiteServer, SourcesServer]) -> SiteServer:
    return shared[0]


@pytest.fixture
def sources(shared: tuple[SiteServer, SourcesServer]) -> SourcesServer:
    return shared[1]


@pytest.fixture
def client(shared: tuple[SiteServer, SourcesServer]) -> Iterator[httpx.Client]:
    # Depends on the servers so it is closed before they stop.
    with httpx.Client(timeout=10) as http:
        yield http


@dataclass
class Fresh:
    """A demo of its own for a test that writes files or overrides sources."""

    root: Path
    site: SiteServer
    sources: SourcesServer
    client: httpx.Client


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Fresh]:
    with (
        serve_demo(_copy_site(tmp_path), EXAMPLE_SOURCES_ROOT) as (site, sources),
        httpx.Client(timeout=10) as http,
    ):
        yield Fresh(site.content_root, site, sources, http)


def _tree(response: httpx.Response) -> lxml_html.HtmlElement:
    return lxml_html.fromstring(response.content)


def _raw_get(base_url: str, path: str) -> tuple[int, bytes]:
    """GET with the request target sent verbatim (httpx would normalise dot segments)."""
    url = httpx.URL(base_url)
    connection = http.client.HTTPConnection(url.host, url.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# ------------------------------------------------------------------------------------------ pages


def test_home_page_renders_head_and_layout(site: SiteServer, client: httpx.Client) -> None:
    response = client.get(site.base_url + "/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    tree = _tree(response)
    assert tree.get("lang") == "en"
    assert tree.xpath("//meta/@charset") == ["utf-8"]
    assert tree.findtext(".//title") == "Larkspur – static site hosting for small teams"
    assert tree.xpath("//meta[@name='description']/@content") == [
        "Larkspur builds and hosts static websites for small teams, with previews for every change, "
        "custom domains and backups included."
    ]
    assert tree.xpath("//link[@rel='canonical']/@href") == [site.base_url + "/"]
    assert tree.xpath("//meta[@name='robots']") == []
    # The site name is in the header but not a heading: the only H1 is the page's own.
    assert tree.xpath("//header//*[@class='site-name']//text()") == ["Larkspur"]
    assert [h.text_content() for h in tree.xpath("//h1")] == [
        "Static site hosting that stays out of your way"
    ]
    assert tree.xpath("//h1/ancestor::main")
    assert tree.xpath("//nav//a/@href") == ["/", "/guides/", "/blog/", "/pricing/", "/about/"]
    assert tree.xpath("//main//a[@href='/guides/custom-domains/']")


def test_canonical_and_titles_of_nested_pages(site: SiteServer, client: httpx.Client) -> None:
    tree = _tree(client.get(site.base_url + "/guides/backups/"))
    assert tree.findtext(".//title") == "Backups and restores on Larkspur"
    assert tree.xpath("//link[@rel='canonical']/@href") == [site.base_url + "/guides/backups/"]
    assert "Last updated: 2019-06-12" in tree.xpath("string(//main)")


def test_noindex_front_matter_sets_meta_robots(site: SiteServer, client: httpx.Client) -> None:
    tree = _tree(client.get(site.base_url + "/beta/"))
    assert tree.xpath("//meta[@name='robots']/@content") == ["noindex"]


def test_missing_description_is_not_invented(site: SiteServer, client: httpx.Client) -> None:
    tree = _tree(client.get(site.base_url + "/support/"))
    assert tree.xpath("//meta[@name='description']") == []
    assert tree.findtext(".//title") == "Support – get help with your Larkspur site"


def test_image_without_alt_text_has_no_alt_attribute(site: SiteServer, client: httpx.Client) -> None:
    tree = _tree(client.get(site.base_url + "/blog/faster-images/"))
    assert tree.xpath("//main//img[not(@alt)]/@src") == ["/static/img/build-log.png"]
    assert tree.xpath("//main//img[@alt]/@src") == ["/static/img/image-weight-chart.svg"]


def test_blog_post_shows_its_date(site: SiteServer, client: httpx.Client) -> None:
    tree = _tree(client.get(site.base_url + "/blog/larkspur-2-0/"))
    assert tree.xpath("//main//time/@datetime") == ["2026-09-15"]


def test_raw_html_in_markdown_is_escaped(fresh: Fresh) -> None:
    site, client = fresh.site, fresh.client
    (fresh.root / "evil.md").write_text(
        "---\ntitle: Evil\n---\n# Evil\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1))\n",
        encoding="utf-8",
    )
    response = client.get(site.base_url + "/evil/")
    assert response.status_code == 200
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text
    assert "javascript:" not in "".join(_tree(response).xpath("//a/@href"))


def test_sources_placeholder_is_replaced_by_the_sources_base_url(
    site: SiteServer, sources: SourcesServer, client: httpx.Client
) -> None:
    response = client.get(site.base_url + "/why-static/")
    assert "{{sources}}" not in response.text
    hrefs = _tree(response).xpath("//main//a/@href")
    assert sources.base_url + SURVEY in hrefs
    assert sources.base_url + "/studies/cdn-latency" in hrefs
    assert httpx.URL(sources.base_url).port != httpx.URL(site.base_url).port
    assert client.get(sources.base_url + SURVEY).status_code == 200


def test_render_page_without_sources_server_points_at_an_unresolvable_host() -> None:
    document = Document({"title": "T", "description": "D"}, "# T\n\n[s]({{sources}}/x)\n")
    page = render_page(document, "/t/", base_url="http://127.0.0.1:1", site_name="S", sources_url=None)
    assert f'href="{UNRESOLVED_SOURCES_URL}/x"' in page
    assert '<link rel="canonical" href="http://127.0.0.1:1/t/">' in page
    assert '<meta name="description" content="D">' in page


def test_render_page_escapes_front_matter() -> None:
    document = Document({"title": 'A <b> & "c"', "description": '"><script>'}, "text")
    page = render_page(document, "/", base_url="http://127.0.0.1:1", site_name="S<", sources_url=None)
    assert "<title>A &lt;b&gt; &amp; &quot;c&quot;</title>" in page
    assert "<script>" not in page
    assert "S&lt;" in page


# -------------------------------------------------------------------------------------- redirects


def test_alias_answers_301_to_the_page(site: SiteServer, client: httpx.Client) -> None:
    for path in ("/guides/deploy-hooks/", "/guides/deploy-hooks"):
        response = client.get(site.base_url + path)
        assert response.status_code == 301, path
        assert response.headers["location"] == site.base_url + "/guides/webhooks/"


def test_non_canonical_spellings_redirect_to_the_canonical_path(
    site: SiteServer, client: httpx.Client
) -> None:
    for path, target in (("/guides/backups", "/guides/backups/"), ("/about.html", "/about/")):
        response = client.get(site.base_url + path)
        assert response.status_code == 301, path
        assert response.headers["location"] == site.base_url + target


def test_three_hop_redirect_chain(site: SiteServer, client: httpx.Client) -> None:
    response = client.get(site.base_url + "/docs/setup/", follow_redirects=True)
    assert response.status_code == 200
    assert [str(hop.url) for hop in response.history] == [
        site.base_url + "/docs/setup/",
        site.base_url + "/docs/install/",
        site.base_url + "/guides/install/",
    ]
    assert [hop.status_code for hop in response.history] == [301, 301, 301]
    assert str(response.url) == site.base_url + "/guides/getting-started/"


# ------------------------------------------------------------------------------------ not found


def test_unknown_path_and_draft_answer_404_html(site: SiteServer, client: httpx.Client) -> None:
    for path in ("/guides/spam-filtering/", "/blog/next-release/", "/no/such/page/"):
        response = client.get(site.base_url + path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert _tree(response).xpath("//meta[@name='robots']/@content") == ["noindex"]
    assert (site.content_root / "blog" / "next-release.md").is_file()


def test_underscore_files_are_not_served(site: SiteServer, client: httpx.Client) -> None:
    assert (site.content_root / "_redirects").is_file()
    for path in ("/_redirects", "/_redirects/", "/.git/config"):
        assert client.get(site.base_url + path).status_code == 404, path


@pytest.mark.parametrize(
    "path",
    [
        "/../secret/",
        "/../secret.md",
        "/%2e%2e/secret/",
        "/%2E%2E/secret/",
        "/..%2fsecret/",
        "/%2e%2e%2fsecret/",
        "/guides/../../secret/",
        "/guides/%2e%2e/%2e%2e/secret/",
        "/..\\secret/",
        "/%5c..%5csecret/",
        "/static/../../secret.txt",
        "/static/%2e%2e/%2e%2e/secret.txt",
        "/static/..%2f..%2fsecret.txt",
        "/../pyproject.toml",
        "/%2e%2e/",
        "/secret%00/",
    ],
)
def test_traversal_attempts_get_404(site: SiteServer, path: str) -> None:
    status, body = _raw_get(site.base_url, path)
    assert status == 404
    assert SECRET.encode() not in body
    assert b"[project]" not in body


def test_symlinks_leaving_the_root_are_not_followed(fresh: Fresh) -> None:
    site, root = fresh.site, fresh.root
    (root / "escape.md").symlink_to(root.parent / "secret.md")
    (root / "static" / "escape.txt").symlink_to(root.parent / "secret.txt")
    assert (root / "escape.md").read_text(encoding="utf-8").count(SECRET) == 2  # the link itself works
    for path in ("/escape/", "/static/escape.txt"):
        status, body = _raw_get(site.base_url, path)
        assert status == 404, path
        assert SECRET.encode() not in body


def test_sources_server_refuses_traversal(sources: SourcesServer) -> None:
    for path in ("/../pyproject.toml", "/%2e%2e/pyproject.toml", "/reports/..%2f..%2fPROBLEMS.md"):
        status, body = _raw_get(sources.base_url, path)
        assert status == 404, path
        assert b"[project]" not in body


# ----------------------------------------------------------------------------------- validators


def test_etag_and_if_none_match(site: SiteServer, client: httpx.Client) -> None:
    first = client.get(site.base_url + "/pricing/")
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = client.get(site.base_url + "/pricing/", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert client.get(site.base_url + "/pricing/", headers={"If-None-Match": '"other"'}).status_code == 200
    weak = client.get(site.base_url + "/pricing/", headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304


def test_last_modified_is_the_file_mtime_and_if_modified_since(fresh: Fresh) -> None:
    site, client = fresh.site, fresh.client
    stamp = 1_700_000_000
    os.utime(fresh.root / "about.md", (stamp, stamp))
    response = client.get(site.base_url + "/about/")
    assert response.headers["last-modified"] == email.utils.formatdate(stamp, usegmt=True)
    since = response.headers["last-modified"]
    assert client.get(site.base_url + "/about/", headers={"If-Modified-Since": since}).status_code == 304
    earlier = email.utils.formatdate(stamp - 86_400, usegmt=True)
    assert client.get(site.base_url + "/about/", headers={"If-Modified-Since": earlier}).status_code == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110).
    mixed = client.get(
        site.base_url + "/about/", headers={"If-Modified-Since": since, "If-None-Match": '"x"'}
    )
    assert mixed.status_code == 200
    garbage = client.get(site.base_url + "/about/", headers={"If-Modified-Since": "yesterday"})
    assert garbage.status_code == 200


def test_head_answers_headers_without_body(site: SiteServer, client: httpx.Client) -> None:
    get = client.get(site.base_url + "/guides/")
    head = client.head(site.base_url + "/guides/")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == get.headers["etag"]
    assert int(head.headers["content-length"]) == len(get.content)


# ---------------------------------------------------------------------------------- live edits


def test_an_edit_to_the_content_directory_shows_up_on_the_next_request(fresh: Fresh) -> None:
    site, client = fresh.site, fresh.client
    before = client.get(site.base_url + "/guides/backups/")
    assert "Last updated: 2019-06-12" in before.text
    file = fresh.root / "guides" / "backups.md"
    file.write_text(
        file.read_text(encoding="utf-8").replace("Last updated: 2019-06-12", "Last updated: 2026-11-01"),
        encoding="utf-8",
    )
    after = client.get(site.base_url + "/guides/backups/", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200
    assert "Last updated: 2026-11-01" in after.text
    assert "2019-06-12</" not in after.text
    assert after.headers["etag"] != before.headers["etag"]
    assert (EXAMPLE_SITE_ROOT / "guides" / "backups.md").read_text(encoding="utf-8").count("2019-06-12") == 2


def test_new_and_removed_pages_show_up_in_the_sitemap(fresh: Fresh) -> None:
    site, client = fresh.site, fresh.client
    (fresh.root / "guides" / "new-guide.md").write_text(
        "---\ntitle: New guide\nupdated: 2026-11-02\n---\n# New\n", encoding="utf-8"
    )
    (fresh.root / "legacy-plans.md").unlink()
    sitemap = client.get(site.base_url + "/sitemap.xml").text
    assert f"<loc>{site.base_url}/guides/new-guide/</loc><lastmod>2026-11-02</lastmod>" in sitemap
    assert "/legacy-plans/" not in sitemap
    assert client.get(site.base_url + "/guides/new-guide/").status_code == 200
    assert client.get(site.base_url + "/legacy-plans/").status_code == 404


# ----------------------------------------------------------------------------- robots, sitemap


def test_robots_txt(site: SiteServer, client: httpx.Client) -> None:
    response = client.get(site.base_url + "/robots.txt")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert f"Sitemap: {site.base_url}/sitemap.xml" in response.text.splitlines()
    parser = urllib.robotparser.RobotFileParser()
    parser.parse(response.text.splitlines())
    assert not parser.can_fetch("sitesteward", site.base_url + "/private/roadmap/")
    assert parser.can_fetch("sitesteward", site.base_url + "/about/")


def test_sitemap_lists_every_served_page(site: SiteServer, client: httpx.Client) -> None:
    response = client.get(site.base_url + "/sitemap.xml")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/xml; charset=utf-8"
    root = etree.fromstring(response.content)
    namespace = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
    entries = {
        url.findtext(f"{namespace}loc"): url.findtext(f"{namespace}lastmod")
        for url in root.iter(f"{namespace}url")
    }
    paths = {loc.removeprefix(site.base_url) for loc in entries if loc}
    assert all(loc and loc.startswith(site.base_url + "/") for loc in entries)
    assert paths == {
        "/",
        "/about/",
        "/beta/",
        "/blog/",
        "/blog/faster-images/",
        "/blog/larkspur-2-0/",
        "/blog/moving-from-jekyll/",
        "/blog/team-offsite/",
        "/careers/",
        "/changelog/",
        "/contact/",
        "/guides/",
        "/guides/backups/",
        "/guides/custom-domains/",
        "/guides/forms/",
        "/guides/getting-started/",
        "/guides/webhooks/",
        "/legacy-plans/",
        "/pricing/",
        "/private/roadmap/",
        "/security/",
        "/support/",
        "/why-static/",
    }
    assert entries[site.base_url + "/guides/backups/"] == "2019-06-12"
    assert entries[site.base_url + "/blog/faster-images/"] == "2026-07-02"
    for loc in entries:
        assert client.get(loc).status_code == 200, loc


# ------------------------------------------------------------------------------------- static


def test_static_files(site: SiteServer, client: httpx.Client) -> None:
    svg = client.get(site.base_url + "/static/img/larkspur-logo.svg")
    assert svg.status_code == 200
    assert svg.headers["content-type"] == "image/svg+xml"
    assert svg.content.startswith(b"<svg")
    png = client.get(site.base_url + "/static/img/build-log.png")
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert (
        client.get(
            site.base_url + "/static/img/larkspur-logo.svg", headers={"If-None-Match": svg.headers["etag"]}
        ).status_code
        == 304
    )
    for path in ("/static/", "/static/img/", "/static/img/missing.png"):
        assert client.get(site.base_url + path).status_code == 404, path


# ------------------------------------------------------------------------------------- sources


def test_sources_server_pages_and_versions(fresh: Fresh) -> None:
    sources, client = fresh.sources, fresh.client
    current = client.get(sources.base_url + SURVEY)
    assert current.status_code == 200
    assert "As of 2025, 57% of teams use static sites" in current.text
    assert client.get(sources.base_url + SURVEY + ".html").text == current.text

    sources.use_version(SURVEY, "static-sites-survey-2019")
    old = client.get(sources.base_url + SURVEY, headers={"If-None-Match": current.headers["etag"]})
    assert old.status_code == 200
    assert "As of 2019, 42% of teams use static sites" in old.text
    assert "57%" not in old.text

    sources.clear_override(SURVEY)
    back = client.get(sources.base_url + SURVEY, headers={"If-None-Match": old.headers["etag"]})
    assert back.status_code == 200
    assert "57%" in back.text

    sources.set_override("/anything", "<p>hello</p>")
    assert client.get(sources.base_url + "/anything").text == "<p>hello</p>"
    sources.clear_override()
    assert client.get(sources.base_url + "/anything").status_code == 404


def test_sources_server_not_found_and_hidden_versions(sources: SourcesServer, client: httpx.Client) -> None:
    assert client.get(sources.base_url + "/").status_code == 200
    for path in (
        "/reports/cms-market-2018",
        "/_versions/static-sites-survey-2019",
        "/_versions/static-sites-survey-2019.html",
    ):
        assert client.get(sources.base_url + path).status_code == 404, path
    with pytest.raises(FileNotFoundError):
        sources.use_version(SURVEY, "no-such-version")


# ----------------------------------------------------------------------------- binding, life


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", ""])
def test_non_loopback_hosts_are_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        SiteServer(EXAMPLE_SITE_ROOT, host=host)
    with pytest.raises(ValueError, match="loopback"):
        SourcesServer(EXAMPLE_SOURCES_ROOT, host=host)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.2", "::1"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    with SiteServer(EXAMPLE_SITE_ROOT, host=host) as server, httpx.Client() as http:
        response = http.get(server.base_url + "/")
        assert response.status_code == 200
        assert server.base_url in response.text  # canonical link


def test_stop_releases_the_port_and_is_idempotent() -> None:
    server = SiteServer(EXAMPLE_SITE_ROOT).start()
    assert server.start() is server
    base_url = server.base_url
    with httpx.Client() as http:
        assert http.get(base_url + "/").status_code == 200
    server.stop()
    server.stop()
    with pytest.raises(httpx.ConnectError), httpx.Client() as http:
        http.get(base_url + "/")
    with pytest.raises(RuntimeError):
        _ = server.base_url


def test_missing_content_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        SiteServer(tmp_path / "nope")
