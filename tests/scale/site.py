"""A generated site of N pages that each need a refresh (a stale "as of 2019" figure with a cited source).

Every page is a variant of the bundled ``examples/site/why-static.md``: its adoption figure cites the
sources server's survey, which now reports a newer year and figure, so the audit raises ``stale_date``
and the offline drafter proposes the same two-token edit on every page (``2019`` -> ``2025``,
``42%`` -> ``57%``). Titles and descriptions are unique so no other refresh finding appears.
"""

from __future__ import annotations

from pathlib import Path

from sitesteward.demo.render import FOOTER_LINKS, NAVIGATION

#: The claim every generated page makes (stale: the source now says 2025 and 57%).
STALE_CLAIM = "As of 2019, 42% of teams use static sites for at least one production website"
#: The claim after the drafted edit is published.
FRESH_CLAIM = "As of 2025, 57% of teams use static sites for at least one production website"

_PAGE = """---
title: Static adoption field note {n:03d}
description: Field note {n:03d} on static site adoption, with the survey figures teams ask about most.
updated: 2026-02-14
---
# Static adoption, field note {n:03d}

A static site is a set of files built ahead of time: HTML, stylesheets, scripts and images. When a visitor
asks for a page, the server sends a file it already has instead of running code and querying a database.
That one difference explains most of the benefits people report in this note, number {n:03d}.

## Adoption

Static sites are no longer a niche choice for developer blogs. {claim}, according to the
[State of Static Sites survey]({sources}/reports/static-sites-survey). Documentation, marketing pages and
company blogs are the most common uses, because their content changes a few times a day at most.

## Security and cost

With no application server and no database behind the page, there is far less to attack and far less to
patch. Hosting is cheap for the same reason: serving files costs a fraction of running servers, and a
traffic spike is a caching problem rather than an outage. Teams that moved most often cited page speed,
lower hosting costs and fewer security updates as their reasons, and few of them went back afterwards.

## When static is not the answer

Sites that show every visitor different content, such as a shop basket or a dashboard, still need code on
the server. Many teams combine both: a static site for the pages everyone reads, and a small service for
the parts that are truly dynamic. The [index](/) lists every field note in this series.
"""

_INDEX = """---
title: Static adoption field notes
description: Every field note on static site adoption, one page each, with the survey figures behind them.
updated: 2026-02-14
---
# Static adoption field notes

These notes collect what teams told us about static sites, one short page each, so that every figure can
be checked against its source and refreshed when the survey publishes a new edition of its results.

{links}
"""


#: The pages the demo layout's header and footer link to (``sitesteward.demo.render``): plain pages with
#: nothing to refresh, so that the only refresh findings are the notes' stale claims.
_LAYOUT_PAGES = tuple(path.strip("/") for _, path in (*NAVIGATION, *FOOTER_LINKS) if path.strip("/"))

_PLAIN = """---
title: Field notes {name}
description: The {name} page of the static adoption field notes; nothing on it dates or needs a refresh.
updated: 2026-02-14
---
# Field notes {name}

This page belongs to the field notes site and exists so that every link in its header and footer leads
somewhere. The [index](/) lists every field note in this series.
"""


def page_path(n: int) -> str:
    """The URL path of page ``n`` (``/notes/note-007/``)."""
    return f"/notes/note-{n:03d}/"


def page_file(root: Path, n: int) -> Path:
    """The Markdown file of page ``n`` under the content root."""
    return root / "notes" / f"note-{n:03d}.md"


def generate_site(root: Path, pages: int, sources_url: str) -> list[Path]:
    """Write ``pages`` stale pages and an index linking them all under ``root``; return the page files."""
    (root / "notes").mkdir(parents=True, exist_ok=True)
    files = []
    for n in range(pages):
        path = page_file(root, n)
        path.write_text(_PAGE.format(n=n, claim=STALE_CLAIM, sources=sources_url), encoding="utf-8")
        files.append(path)
    links = "\n".join(f"- [Field note {n:03d}]({page_path(n)})" for n in range(pages))
    (root / "index.md").write_text(_INDEX.format(links=links), encoding="utf-8")
    for name in _LAYOUT_PAGES:
        (root / f"{name}.md").write_text(_PLAIN.format(name=name), encoding="utf-8")
    return files
