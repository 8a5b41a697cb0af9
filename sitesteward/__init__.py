"""sitesteward: keep a website's content accurate and healthy, with a human in the loop.

The domain package never imports Prefect (the one exception is :mod:`sitesteward.cli`, the thin
command-line face that starts flows); everything here is testable with plain pytest.
"""

__version__ = "0.1.0"
