"""``MarkdownContentTarget``: where approved edits are written (a Markdown content directory)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl

from blocks.loading import load_named
from blocks.site import DOCS_URL
from sitesteward.publish import MarkdownContentTarget as MarkdownPublisher


class MarkdownContentTarget(Block):
    """A static site's Markdown content directory and the public URL it is served under.

    The publish target of a job is derived from this mapping and the job's page URL only; it must resolve
    inside ``content_root``.
    """

    _block_type_name: ClassVar[str] = "Sitesteward Markdown Content Target"
    _documentation_url: ClassVar[HttpUrl | None] = DOCS_URL
    _code_example: ClassVar[str] = """
```python
from blocks import MarkdownContentTarget

target = MarkdownContentTarget.load("BLOCK_NAME")
publisher = target.publisher()
```
"""

    content_root: str = Field(description="The directory holding the site's Markdown files (absolute path).")
    base_url: str = Field(
        description="The public URL that maps to content_root, such as https://example.com/."
    )
    git_commit: bool = Field(
        default=False,
        description="Commit each published edit (content_root must sit in a git work tree with an identity).",
    )

    def publisher(self) -> MarkdownPublisher:
        """Build the domain publisher for this directory.

        Returns:
            A :class:`sitesteward.publish.MarkdownContentTarget`.

        Raises:
            sitesteward.errors.ConfigurationError: ``content_root`` is not a directory or ``base_url`` is
                not an http(s) URL.
        """
        return MarkdownPublisher(
            content_root=Path(self.content_root), base_url=self.base_url, git_commit=self.git_commit
        )


def load_content_target(name: str) -> MarkdownContentTarget:
    """Load the ``MarkdownContentTarget`` block ``name``.

    Raises:
        ConfigurationError: no such block (one line, for the CLI's exit code 2).
    """
    return load_named(MarkdownContentTarget, name)
