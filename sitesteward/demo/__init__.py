"""The bundled demo: a Markdown site server and an "external" sources server on loopback.

``serve_demo()`` runs both over ``examples/site`` and ``examples/sources``; the ``sitesteward demo``
command crawls, audits and refreshes the site they serve. ``examples/PROBLEMS.md`` lists the
deliberate problems the audit should find.
"""

from sitesteward.demo.render import SOURCES_PLACEHOLDER, render_page
from sitesteward.demo.server import (
    DEMO_SITE_NAME,
    EXAMPLE_SITE_ROOT,
    EXAMPLE_SOURCES_ROOT,
    SiteServer,
    SourcesServer,
    serve_demo,
)

__all__ = [
    "DEMO_SITE_NAME",
    "EXAMPLE_SITE_ROOT",
    "EXAMPLE_SOURCES_ROOT",
    "SOURCES_PLACEHOLDER",
    "SiteServer",
    "SourcesServer",
    "render_page",
    "serve_demo",
]
