"""Cache and checkpoint keys of a job's steps: built from what a step consumes, never from a run id.

A re-run of the same job (a new process, a resumed or restarted run) builds the same keys, so finished
steps are found in the ledger (and in an executor's result cache); a changed page, source, prompt or
:data:`CODE_VERSION` builds new ones.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel

#: Bump when a step's output model or logic changes, so old checkpoints and cached results are not reused.
CODE_VERSION = "2026-11-29.1"


def stable_hash(*parts: object) -> str:
    """A sha256 hex digest of JSON-able parts (pydantic models dumped in JSON mode)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, BaseModel):
            part = part.model_dump(mode="json")
        digest.update(json.dumps(part, sort_keys=True, default=str, separators=(",", ":")).encode())
        digest.update(b"\x1f")
    return digest.hexdigest()
