"""extract_page on saved pages: metadata, links, images, main text, dates, JSON-LD, robustness."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sitesteward.extract import extract_page
from sitesteward.models import PageData, QueryHandling

PAGES = Path(__file__).parent.parent / "fixtures" / "pages"
DOCS_URL = "https://docs.acme.example/docs/workers/configure/"
BLOG_URL = "https://blog.example.com/2019/03/faster-builds/"
SHOP_URL = "https://shop.example.de/de/produkt-x/"


def _read(name: str, encoding: str = "utf-8") -> str:
    return (PAGES / name).read_text(encoding=encoding)


@pytest.fixture(scope="module")
def docs() -> PageData:
    return extract_page(_read("docs_page.html"), DOCS_URL, site_hosts=frozenset({"acme.example"}))


@pytest.fixture(scope="module")
def blog() -> PageData:
    return extract_page(_read("blog_post.html"), BLOG_URL)


@pytest.fixture(scope="module")
def shop() -> PageData:
    return extract_page(_read("jsonld_hreflang.html"), SHOP_URL)


def _link(data: PageData, href: str):
    matches = [link for link in data.links if link.href == href]
    assert matches, f"{href} not among {[link.href for link in data.links]}"
    return matches[0]


# ---------------------------------------------------------------------------------------- metadata


def test_docs_head_fields(docs: PageData) -> None:
    assert docs.title == "Configuring workers — Acme Docs"
    assert docs.meta_description is not None
    assert docs.meta_description.startswith("How to configure Acme workers")
    assert docs.canonical == DOCS_URL  # "/docs/workers/configure/" absolutised
    assert docs.lang == "en-GB"
    assert docs.meta_robots is None
    assert docs.headings == {
        "h1": ["Configuring workers"],
        "h2": ["Work pools", "Concurrency limits"],
        "h3": ["Environment variables"],
    }


def test_meta_robots_reads_googlebot_and_robots(blog: PageData, shop: PageData) -> None:
    assert blog.meta_robots == "index, follow"
    assert shop.meta_robots == "noindex"  # <meta name="googlebot">


def test_canonical_is_normalised_without_tracking(blog: PageData) -> None:
    assert blog.canonical == BLOG_URL  # ?utm_source=feed stripped


def test_canonical_keeps_query_when_asked() -> None:
    data = extract_page(_read("blog_post.html"), BLOG_URL, query_handling=QueryHandling.keep)
    assert data.canonical == BLOG_URL + "?utm_source=feed"


def test_base_href_and_hreflang(shop: PageData) -> None:
    assert shop.hreflang == {
        "de": "https://shop.example.de/de/produkt-x/",
        "en-gb": "https://shop.example.de/en/product-x/",
        "x-default": "https://shop.example.de/product-x/",
    }
    # relative links resolve against <base href="https://shop.example.de/de/">, not the page URL
    assert _link(shop, "https://shop.example.de/de/zubehoer/").text == "Zubehör"
    assert shop.canonical == "https://shop.example.de/de/produkt-x/"


def test_jsonld_types_graph_lists_and_malformed(shop: PageData) -> None:
    assert shop.jsonld_types == [
        "Organization",
        "Product",
        "IndividualProduct",
        "BreadcrumbList",
        "WebPage",
        "FAQPage",
    ]
    assert "Offer" not in shop.jsonld_types  # nested property values are not page types


# ---------------------------------------------------------------------------------------- links


def test_links_absolute_normalised_and_filtered(docs: PageData) -> None:
    hrefs = [link.href for link in docs.links]
    assert all(href.startswith("https://") for href in hrefs)
    assert not any("mailto" in h or "tel:" in h or "javascript" in h for h in hrefs)
    assert "https://docs.acme.example/docs/workers/scaling/" in hrefs  # "../scaling/"
    assert len(hrefs) == len(set(hrefs))  # de-duplicated


def test_link_flags(docs: PageData) -> None:
    github = _link(docs, "https://github.com/acme/acme")
    assert (github.internal, github.rel, github.in_main) == (False, "noopener", False)
    nav = _link(docs, "https://docs.acme.example/docs/install/")
    assert nav.internal and not nav.in_main  # sidebar
    # in the sidebar first, then in the body text: in_main because one occurrence is
    scaling = _link(docs, "https://docs.acme.example/docs/workers/scaling/")
    assert scaling.in_main
    k8s = _link(docs, "https://kubernetes.io/docs/concepts/workloads/pods/")
    assert k8s.in_main and not k8s.internal and k8s.text == "Kubernetes pod documentation"
    share = _link(docs, "https://twitter.com/intent/tweet?url=x")
    assert not share.in_main  # .share-buttons is boilerplate
    assert not _link(docs, "https://docs.acme.example/privacy/").in_main  # cookie banner


def test_site_hosts_make_links_internal(blog: PageData) -> None:
    assert not _link(blog, "https://docs.example.org/ci/caching").internal
    data = extract_page(_read("blog_post.html"), BLOG_URL, site_hosts=frozenset({"docs.example.org"}))
    assert _link(data, "https://docs.example.org/ci/caching").internal


def test_image_only_link_uses_alt_text(docs: PageData) -> None:
    assert _link(docs, "https://docs.acme.example/").text == "Acme"


def test_images_alt_absent_vs_empty(docs: PageData) -> None:
    alts = {image.src.rsplit("/", 1)[1]: image.alt for image in docs.images}
    assert alts == {
        "logo.svg": "Acme",
        "pool-diagram.png": "A pool with three workers",
        "spacer.gif": "",
        "chart.png": None,
    }


# ---------------------------------------------------------------------------------------- main text


def test_main_text_strips_boilerplate_hidden_and_comments(docs: PageData) -> None:
    text = docs.main_text
    assert text.startswith("Configuring workers\nA worker polls a work pool")
    for boilerplate in (
        "cookies",  # cookie banner
        "Quickstart",  # sidebar
        "Pricing",  # top nav
        "Search the docs",  # form
        "Imprint",  # footer
        "Skip to content",
        "On this page",  # .toc
        "Hidden note",  # hidden attribute
        "tracking pixel",  # display: none
        "TODO",  # comment
        "dataLayer",  # script
        "Share on X",
        "Configure",  # breadcrumbs ("Configuring" is in the text; "Configure" alone is not)
    ):
        assert boilerplate not in text.replace("Configuring", ""), boilerplate
    assert "Workers share one pool." in text  # figcaption is content
    assert "prefetch\n10 s" in text  # table cells are separated, not glued


def test_word_count_and_hash_match_text(docs: PageData) -> None:
    normalised = " ".join(docs.main_text.split())
    assert docs.word_count == len(normalised.split())
    assert docs.text_hash == hashlib.sha256(normalised.encode()).hexdigest()


def test_hash_ignores_markup_and_whitespace_changes() -> None:
    one = "<html><body><main><h1>Title</h1><p>Some   words here.</p><p>More.</p></main></body></html>"
    two = (
        '<html><body class="v2"><main id="x"><h1 class="big">Title</h1>\n<p>Some <b>words</b>\n here.</p>'
        "<div>More.</div><!-- build 1234 --></main><script>var build=5678;</script></body></html>"
    )
    first, second = extract_page(one, "https://a.example/"), extract_page(two, "https://a.example/")
    assert first.text_hash == second.text_hash
    changed = extract_page(one.replace("More.", "Less."), "https://a.example/")
    assert changed.text_hash != first.text_hash


def test_article_header_is_kept_but_site_header_dropped(blog: PageData) -> None:
    assert blog.main_text.startswith("How we cut our build times in half\nBy Dana Smith")
    assert "Archive" not in blog.main_text  # site <header><nav>
    assert "Popular posts" not in blog.main_text  # <aside>
    assert "Tags: ci, performance" in blog.main_text  # the article's own footer
    assert "© 2019 The Example Blog" not in blog.main_text  # site footer


def test_role_main_and_landmark_roles(shop: PageData) -> None:
    assert shop.main_text.startswith("Produkt X\nProdukt X kostet 19,99 €")
    assert "Impressum" not in shop.main_text  # role=contentinfo
    assert "Kategorie" not in shop.main_text  # role=navigation
    assert not _link(shop, "https://shop.example.de/de/kategorie/").in_main


def test_lone_article_is_main_and_several_fall_back_to_body() -> None:
    lone = extract_page(
        "<body><div>Header words</div><article><p>Story text.</p></article></body>", "https://a.example/"
    )
    assert lone.main_text == "Story text."
    listing = extract_page(
        "<body><p>Intro</p><article><p>One.</p></article><article><p>Two.</p></article></body>",
        "https://a.example/",
    )
    assert listing.main_text == "Intro\nOne.\nTwo."


def test_state_class_on_wrapper_does_not_drop_content() -> None:
    html = (
        '<body><div class="layout has-sidebar"><p>Real content.</p></div><div class="sidebar">x</div></body>'
    )
    assert extract_page(html, "https://a.example/").main_text == "Real content."


@pytest.mark.parametrize(
    "wrapper",
    ['<div id="content-sidebar-wrap">', '<div class="page-with-sidebar">', '<section id="related-content">'],
)
def test_box_named_like_boilerplate_that_wraps_the_content_stays(wrapper: str) -> None:
    # Theme wrappers hold the article and its sidebar: the name is boilerplate, the box is the page.
    close = "</section>" if wrapper.startswith("<section") else "</div>"
    steps = "Run the installer and follow the steps. " * 8
    html = (
        f"<body>{wrapper}<div><h2>Installing</h2><p>{steps}</p></div>"
        '<div class="sidebar"><p>Popular posts</p></div>'
        f"{close}<div class='share'><a href='/s'>Share</a></div></body>"
    )
    data = extract_page(html, "https://a.example/")
    assert data.main_text.startswith("Installing\nRun the installer")
    assert "Popular posts" not in data.main_text  # the real sidebar inside it still goes
    assert "Share" not in data.main_text
    assert data.word_count == 57


def test_box_named_like_boilerplate_holding_the_h1_stays() -> None:
    html = (
        '<body><div class="related-article"><h1>Pricing</h1><p>From 5 EUR.</p></div>'
        '<div class="related"><p>Other pages</p></div></body>'
    )
    assert extract_page(html, "https://a.example/").main_text == "Pricing\nFrom 5 EUR."


def test_menu_bigger_than_a_thin_page_still_goes() -> None:
    # Most of main's text, but nearly all of it links: navigation, not content.
    html = '<body><p>Coming soon.</p><div class="main-menu">' + '<a href="/a">Products and services</a> ' * 20
    data = extract_page(html + "</div></body>", "https://a.example/")
    assert data.main_text == "Coming soon."
    assert data.word_count == 2


def test_empty_main_falls_back_to_body() -> None:
    html = "<body><main></main><div><p>Rendered elsewhere.</p></div></body>"
    assert extract_page(html, "https://a.example/").main_text == "Rendered elsewhere."


# ---------------------------------------------------------------------------------------- dates


def test_dates_from_main_text(blog: PageData) -> None:
    # "In 2018 we had tried bigger machines": it happened then (history), which never goes stale.
    assert blog.dates == ["updated 2019-03-03", "as of 2019", "event in 2018", "since 2017"]


def test_dates_ignore_site_chrome(docs: PageData) -> None:
    # "© 2015-2024 ... Last updated March 3, 2019" sits in the site footer, not the main text
    assert docs.dates == []


# ---------------------------------------------------------------------------------------- robustness


def test_cp1252_page_read_as_str() -> None:
    data = extract_page(_read("cp1252.html", encoding="cp1252"), "https://cafe.example.fr/")
    assert data.title == "Café “Le Français” – Menu & horaires"
    assert data.meta_description == "Le café est ouvert du lundi au samedi – menu du jour, réservations…"
    assert "2,50\xa0€" in data.main_text or "2,50 €" in data.main_text
    assert _link(data, "https://cafe.example.fr/menu/d%C3%A9jeuner").text == "Déjeuner"
    assert data.images[0].alt == "La façade"
    assert data.dates == ["updated 2016-09-01"]


def test_malformed_page_yields_what_it_can() -> None:
    data = extract_page(_read("malformed.html"), "https://m.example.com/a/b")
    assert data.headings["h1"] == ["Heading after garbage"]
    assert "https://m.example.com/two?a=1&b=2" in [link.href for link in data.links]
    assert not any("commented" in link.href for link in data.links)  # inside a comment
    assert "a link" not in data.main_text
    assert "not text" not in data.main_text  # script content
    assert data.images[0].alt == ""  # alt= with no value


@pytest.mark.parametrize(
    "html",
    [
        "",
        "   \n ",
        "\x00\x01\x02\xff\ufffe garbage \ud800 lone surrogate",
        "<<<>>>",
        "<html><head><title>only a title</title></head></html>",
        '<?xml version="1.0" encoding="iso-8859-1"?><html><body><p>x</p></body></html>',
        "<svg><title>icon</title></svg><p>text</p>",
        "<div>" * 3000 + "deep" + "</div>" * 3000,
        '<script type="application/ld+json">' + "[" * 100_000 + "</script>",
        '<a href="http://[::1">x</a><a href="https://exa\x00mple.com/">y</a><img alt="no src">',
        bytes(range(256)).decode("latin-1") * 20,
    ],
)
def test_never_raises(html: str) -> None:
    data = extract_page(html, "https://a.example/x")
    assert isinstance(data, PageData)
    assert len(data.text_hash) == 64


@pytest.mark.parametrize("control", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\ufffe"])
def test_control_character_does_not_empty_the_page(control: str) -> None:
    # Browsers shrug these off; libxml2 keeps them in the text, which lxml then refuses to rewrite.
    html = (
        f"<html><head><title>Price{control} list</title></head><body><h1>Prices{control}</h1>"
        f'<p>Plans start at 5 EUR{control} a month. <a href="/plans">Compare plans</a></p></body></html>'
    )
    data = extract_page(html, "https://a.example/")
    assert data.title == "Price list"
    assert data.headings["h1"] == ["Prices"]
    assert [link.href for link in data.links] == ["https://a.example/plans"]
    assert data.main_text == "Prices\nPlans start at 5 EUR a month. Compare plans"
    # the same page without the character: same text, same hash (no change reported on a re-crawl)
    assert data.text_hash == extract_page(html.replace(control, ""), "https://a.example/").text_hash


def test_empty_document_is_empty_data() -> None:
    data = extract_page("", "https://a.example/")
    assert (data.title, data.word_count, data.links, data.main_text) == (None, 0, [], "")


def test_svg_title_is_not_the_page_title() -> None:
    assert extract_page("<svg><title>icon</title></svg><p>text</p>", "https://a.example/").title is None


def test_huge_attribute_keeps_the_rest_of_the_document() -> None:
    html = '<html><head><title>T</title></head><body><div data-x="' + "x" * 5_000_000 + '">hello</div>'
    html += '<p>after <a href="/next">next</a></p></body></html>'
    data = extract_page(html, "https://a.example/")
    assert data.title == "T"
    assert data.main_text == "hello\nafter next"
    assert [link.href for link in data.links] == ["https://a.example/next"]


def test_large_docs_page() -> None:
    data = extract_page(_read("docs_large.html"), "https://docs.acme.example/reference/settings/")
    assert data.headings["h1"] == ["Settings reference"]
    assert len(data.headings["h2"]) == 28
    assert data.jsonld_types == ["TechArticle"]
    assert data.dates == ["updated 2024-11-02", "as of 2024"]
    in_main = [link for link in data.links if link.in_main]
    assert len(in_main) == 56 and all("page-" in link.href or "example.org" in link.href for link in in_main)
    assert "Page 17" not in data.main_text  # the 160-link sidebar
    assert data.word_count > 4000
