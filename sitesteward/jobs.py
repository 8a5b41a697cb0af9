"""Job identity and inputs: what a refresh job is about, and the hashes that make it idempotent.

The ledger identifies a job by (site, page URL, trigger fingerprint): submitting the same findings for
the same page again finds the existing job. URLs inside fingerprints are made relative to the site.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit

from pydantic import Field

from sitesteward.audit import REFRESH_CODES
from sitesteward.models import Contract, Finding


class JobInputs(Contract):
    """Everything a ``refresh_page`` job needs, recorded in the ledger at submission."""

    site_id: str = Field(description="Stable site name (not its address).")
    base_url: str = Field(description="Where the site is served now.")
    page_url: str
    content_root: str = Field(description="The Markdown content directory the publisher writes.")
    findings: list[Finding] = Field(default_factory=list)
    allow_private: bool = False
    max_links: int = Field(default=2, ge=0, le=10)
    git_commit: bool = Field(
        default=False,
        # Left out of the JSON while False: a job recorded before this field existed keeps its stored
        # inputs and the step keys hashed from them (a changed compare key would draft it again).
        exclude_if=lambda value: value is False,
        description="Commit each published edit to the git work tree holding content_root.",
    )


def relative(url: str, base_url: str) -> str:
    """``url`` as a path when it belongs to ``base_url``'s origin, else unchanged."""
    base, target = urlsplit(base_url), urlsplit(url)
    if (base.scheme, base.netloc) == (target.scheme, target.netloc):
        return target.path + (f"?{target.query}" if target.query else "")
    return url


def fingerprint(findings: list[Finding], base_url: str) -> str:
    """A stable hash of the refresh-relevant findings of one page (order and address independent)."""
    keys = sorted(
        {
            (f.code, relative(f.target, base_url) if f.target else "")
            for f in findings
            if f.code in REFRESH_CODES
        }
    )
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16]


def refresh_findings(findings: list[Finding]) -> list[Finding]:
    """The findings that justify a refresh job."""
    return [f for f in findings if f.code in REFRESH_CODES]
