"""The publisher protocol: what every publishing target (Markdown directory, WordPress, ...) offers.

A target is derived only from the job record's page URL and the publisher's configuration (content root,
base URL), never from crawled or model-written text, and must resolve inside the configured root.

Contract every implementation keeps, because :func:`sitesteward.publish.protocol.publish_once` relies on it:

- ``apply`` is all-or-nothing: every edit applies, or nothing is written and an error is raised.
- ``apply`` is idempotent: when ``contains`` is true for every edit it writes nothing (it may finish
  its own bookkeeping, e.g. commit a change a crash left uncommitted) and returns the current revision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic import Field

from sitesteward.errors import PermanentError
from sitesteward.models import Contract, Edit

# TODO(errors.py owner): move these two into sitesteward/errors.py under PermanentError.


class EditConflict(PermanentError):
    """An edit cannot apply: neither its old text (or value) nor its new one is in the target."""


class TargetNotFound(PermanentError):
    """The page URL maps to no existing document under the content root."""


class Target(Contract):
    """Where a page's content lives for one publisher."""

    publisher: str = Field(description="The publisher kind, e.g. 'markdown'.")
    page_url: str = Field(description="The job's page URL the target was derived from.")
    location: str = Field(description="Publisher-specific address: a path relative to the root, a post id.")


class Publisher(Protocol):
    """One publishing target."""

    @property
    def name(self) -> str:
        """The publisher kind (``Target.publisher``)."""
        ...

    def target_for(self, page_url: str) -> Target:
        """Map the job's page URL to this publisher's target.

        Raises:
            PolicyViolation: the URL or the resolved location is outside the configured site or root.
            TargetNotFound: no document holds the page.
        """
        ...

    def read(self, target: Target) -> str:
        """The target's current content."""
        ...

    def contains(self, edit: Edit, content: str) -> bool:
        """Tell whether ``content`` already holds the result of ``edit`` (no I/O)."""
        ...

    def apply(self, target: Target, edits: Sequence[Edit], key: str) -> str:
        """Apply every edit atomically and return the new revision.

        Args:
            target: From :meth:`target_for`.
            edits: The approved draft's edits.
            key: The effect's idempotency key (recorded with the change where the target allows).

        Raises:
            EditConflict: an edit no longer applies (nothing was written).
            PolicyViolation: the target or an edit breaks a guard rail (nothing was written).
        """
        ...
