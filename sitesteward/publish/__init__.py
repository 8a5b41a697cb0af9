"""Publishing: the publisher protocol, the Markdown directory target, and the exactly-once protocol."""

from sitesteward.publish.base import EditConflict, Publisher, Target, TargetNotFound
from sitesteward.publish.markdown import MarkdownContentTarget, apply_edits, edit_contained
from sitesteward.publish.protocol import PublishOutcome, draft_hash, edits_sha, publish_once

__all__ = [
    "EditConflict",
    "MarkdownContentTarget",
    "PublishOutcome",
    "Publisher",
    "Target",
    "TargetNotFound",
    "apply_edits",
    "draft_hash",
    "edit_contained",
    "edits_sha",
    "publish_once",
]
