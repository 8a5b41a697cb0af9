"""Content addressing for the evidence chain: canonical JSON, payload hashes and record hashes.

A record's hash covers the job, the kind, the check, the payload's hash and the previous record's hash,
so changing any stored payload or re-ordering records breaks :meth:`Ledger.verify_chain`. Timestamps are
deliberately left out: the same observation gets the same payload hash whenever it is made.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

#: ``prev_hash`` of a job's first record.
GENESIS = "0" * 64


def canonical_json(payload: Mapping[str, Any] | BaseModel) -> str:
    """Serialise ``payload`` deterministically (sorted keys, no whitespace, UTF-8 kept).

    Raises:
        TypeError: the payload holds something JSON cannot represent.
        ValueError: the payload holds NaN or infinity (not portable JSON).
    """
    data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else dict(payload)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_text(text: str) -> str:
    """Hex sha256 of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_hash(*, job_id: str, kind: str, check: str, payload_sha: str, prev_hash: str) -> str:
    """The content address of one evidence record."""
    head = {
        "job_id": job_id,
        "kind": kind,
        "check": check,
        "payload_sha": payload_sha,
        "prev_hash": prev_hash,
    }
    return sha256_text(canonical_json(head))
