"""robots.txt parsing for our user agent: groups, wildcards, ``$`` anchors, sitemaps, crawl-delay."""

from __future__ import annotations

from sitesteward.crawl.robots import RobotsMode, RobotsPolicy, origin_of, parse_robots, product_token

UA = "sitesteward/0.1 (+https://github.com/sitesteward/sitesteward)"
ROBOTS = """
User-agent: *
Disallow: /

User-agent: sitesteward
Disallow: /private/
Disallow: /*.pdf$
Disallow: /*?session=
Allow: /private/open
Crawl-delay: 99

Sitemap: https://example.com/sitemap.xml
Sitemap: https://example.com/news.xml.gz
"""


def test_our_group_wildcards_and_anchors() -> None:
    policy = parse_robots(ROBOTS, UA)
    allowed = {
        "https://example.com/": True,
        "https://example.com/private/x": False,
        "https://example.com/private/open": True,
        "https://example.com/a/report.pdf": False,
        "https://example.com/a/report.pdf?x=1": True,
        "https://example.com/page?session=1": False,
        "https://example.com/robots.txt": True,
    }
    assert {url: policy.allows(url) for url in allowed} == allowed
    assert policy.sitemaps == ["https://example.com/sitemap.xml", "https://example.com/news.xml.gz"]
    assert policy.crawl_delay == 10.0  # capped


def test_other_agents_fall_back_to_star() -> None:
    policy = parse_robots(ROBOTS, "otherbot/2.0")
    assert not policy.allows("https://example.com/anything")


def test_modes_and_helpers() -> None:
    assert RobotsPolicy(RobotsMode.allow_all).allows("https://x.test/private")
    assert not RobotsPolicy(RobotsMode.disallow_all).allows("https://x.test/")
    assert product_token(UA) == "sitesteward"
    assert product_token("Mozilla/5.0 (compatible)") == "mozilla"
    assert origin_of("HTTPS://Example.com:8443/a?b") == "https://example.com:8443"
    assert parse_robots("garbage\x00\xff lines", UA).allows("https://x.test/")
