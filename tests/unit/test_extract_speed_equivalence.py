"""Edge cases of the fast extraction paths, pinned to what the straightforward implementation returned.

The fast paths read the main text in C without marking the tree, find hidden elements and role=main in
one XPath pass, strip boilerplate in one walk and resolve each href once per page; these documents sit
where such shortcuts could change the output (no timing here).
"""

from __future__ import annotations

import pytest

from sitesteward.extract import extract_page
from sitesteward.models import PageData

URL = "https://a.example/d/p"


def _page(html: str) -> PageData:
    return extract_page(html, URL)


def _links(data: PageData) -> list[tuple[str, str, bool]]:
    return [(link.href, link.text, link.in_main) for link in data.links]


@pytest.mark.parametrize(
    ("html", "main_text"),
    [
        # boilerplate class or id in any case; a state class on a wrapper stays
        (
            '<body><div class="SideBar">x</div><div class="Has-Sidebar">kept</div>'
            '<div id="MAIN-MENU">m</div></body>',
            "kept",
        ),
        # nested articles: the outermost one is the only candidate
        ("<body><p>intro</p><article><p>A</p><article><p>B</p></article></article></body>", "A\nB"),
        ("<body><p>intro</p><article><p>A</p></article><article><p>B</p></article></body>", "intro\nA\nB"),
        # hidden elements of any tag; their tails stay where they were
        (
            '<main><p>keep <span hidden>gone</span>tail</p><p>a<span style="DISPLAY : none">b</span>c</p>'
            '<p aria-hidden="true">x</p><p role=" Navigation ">y</p></main>',
            "keep tail\nac",
        ),
        (
            "<main><p>one<script>x</script>two</p><p>three<nav>n</nav><aside>s</aside>four</p></main>",
            "onetwo\nthreefour",
        ),
        # <main> beats an earlier role=main; the first role=main wins among several
        ('<body><div role="main">R</div><main>M</main></body>', "M"),
        ('<body><p>x</p><div role="main">R1</div><div role="main">R2</div></body>', "R1"),
        # an empty main whose own class is boilerplate: the body fallback drops it, its tail on a new line
        ('<body>P<div role="main" class="sidebar"></div>T</body>', "P\nT"),
        # deep nesting (libxml2 keeps about 2000 levels)
        (
            "<main><p>top</p>"
            + "<div>" * 2000
            + "deep<span>er</span>"
            + "</div>" * 2000
            + "<p>end</p></main>",
            "top\ndeeper\nend",
        ),
    ],
)
def test_main_text_edge_cases(html: str, main_text: str) -> None:
    data = _page(html)
    assert data.main_text == main_text
    assert data.word_count == len(main_text.split())


def test_link_text_gets_the_line_breaks_of_its_blocks_in_main_only() -> None:
    inside = _page(
        '<main><a href="/x">Read<div>more</div></a><a href="/z"><p>para</p>graph<br>line</a></main>'
    )
    assert inside.main_text == "Read\nmore\npara\ngraph\nline"
    assert _links(inside) == [
        ("https://a.example/x", "Read more", True),
        ("https://a.example/z", "para graph line", True),
    ]
    outside = _page('<body><div><a href="/y">Go<div>there</div></a></div><main><p>t</p></main></body>')
    assert _links(outside) == [("https://a.example/y", "Gothere", False)]


def test_anchor_holding_main() -> None:
    data = _page('<body><a href="/w">pre<div role="main"><p>in</p></div>post</a></body>')
    assert data.main_text == "in"
    assert _links(data) == [("https://a.example/w", "pre in post", False)]


def test_in_main_and_text_of_links_in_dropped_boxes() -> None:
    data = _page(
        '<body><a href="/b">B0</a><main><p><a href="/a">A</a></p>'
        '<div class="sidebar"><a href="/b">B</a><a href="/c">C</a></div></main></body>'
    )
    assert _links(data) == [
        ("https://a.example/b", "B0", False),
        ("https://a.example/a", "A", True),
        ("https://a.example/c", "C", False),
    ]
    icons = _page(
        '<body><nav><a href="/t"><svg><title>icon</title></svg>Start</a></nav>'
        '<main><a href="/s"><svg><title>icon</title></svg>Home</a></main></body>'
    )
    assert _links(icons) == [
        ("https://a.example/t", "iconStart", False),
        ("https://a.example/s", "Home", True),
    ]


def test_hrefs_differing_in_fragment_or_whitespace_are_one_link() -> None:
    data = _page(
        '<main><a href="x.html#1">One</a><a href="x.html#2">Two</a><a href=" x.html ">Three</a>'
        '<a href="y.html#' + "f" * 5000 + '">Long</a><a href="y.html">Short</a></main>'
    )
    # an href over 4096 characters is no link, even when a short one with the same path is
    assert _links(data) == [
        ("https://a.example/d/x.html", "One", True),
        ("https://a.example/d/y.html", "Short", True),
    ]
