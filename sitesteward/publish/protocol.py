"""Publish an approved draft exactly once: intent before the write, completion after, reconcile after a crash.

``publish_once`` is the only way the pipeline writes to a site::

    approve decision for (job, draft)?  no  -> PolicyViolation, nothing written
    effect job:publish:draft applied?   yes -> return it, nothing written
    effect pending (crash after intent)?     -> reconcile: target already holds every edit?
                                                 yes -> mark reconciled, nothing written
                                                 no  -> apply, mark applied
    otherwise                                -> write intent, apply, mark applied

Each ledger write checks the caller's fencing token, so a worker whose lease was taken over cannot record
anything; its late ``apply`` is harmless because edits are idempotent (a second apply writes nothing).
No retries happen here: transient errors propagate and leave the intent pending, so the caller's retry
(one layer: the Prefect task) reconciles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from sitesteward.errors import PermanentError, PolicyViolation
from sitesteward.faults import fault_point
from sitesteward.ledger import EffectRecord, EffectStatus, JobState
from sitesteward.ledger.evidence import canonical_json, sha256_text
from sitesteward.models import Contract, Draft, Edit
from sitesteward.publish.base import Publisher, Target

if TYPE_CHECKING:  # the store (SQLAlchemy) loads when a publish runs, not when a block module is imported
    from sitesteward.ledger import Ledger


class PublishOutcome(Contract):
    """What :func:`publish_once` did."""

    key: str = Field(description="The effect's idempotency key job_id:publish:draft_sha.")
    status: Literal["applied", "reconciled", "already_applied"]
    revision: str
    target: str = Field(description="The target location the edits went to.")
    effect: EffectRecord


def draft_hash(draft: Draft) -> str:
    """The hash that names a draft: sha256 of its canonical JSON (the approval and effect keys use it)."""
    return sha256_text(canonical_json(draft))


def edits_sha(edits: Sequence[Edit]) -> str:
    """sha256 of the canonical JSON of an edit list (recorded with the publish request)."""
    return sha256_text(canonical_json({"edits": [edit.model_dump(mode="json") for edit in edits]}))


def publish_once(
    ledger: Ledger,
    publisher: Publisher,
    job_id: str,
    draft_sha: str,
    edits: Draft | Sequence[Edit],
    fence: int,
) -> PublishOutcome:
    """Publish the approved draft ``draft_sha`` of ``job_id`` at most once (and at least once on success).

    Args:
        ledger: The ledger holding the job, its approval and its effects.
        publisher: The site's publisher; the target comes from the job's page URL, never from the draft.
        job_id: The job.
        draft_sha: The approved draft's hash.
        edits: The draft (its hash and page are then checked against ``draft_sha`` and the job) or its edits.
        fence: The caller's lease fencing token (the job version it holds).

    Returns:
        The outcome; ``status`` says whether this call wrote, reconciled a crashed attempt, or found the
        effect already done.

    Raises:
        PolicyViolation: no ``approve`` decision for exactly this draft, the draft is not the job's current
            one, the job is not ``approved``, the draft does not match its hash or page, or the target
            leaves the content root.
        StaleVersion: ``fence`` is stale (another worker owns the job now).
        PermanentError: the publisher refused (e.g. EditConflict); the effect is marked failed.
        TransientError: the target was unreachable; the intent stays pending for the retry to reconcile.
    """
    from sitesteward.ledger.store import PUBLISH_STEP, effect_key

    key = effect_key(job_id, PUBLISH_STEP, draft_sha)
    if not ledger.is_approved(job_id, draft_sha):
        raise PolicyViolation(
            f"job {job_id}: no 'approve' decision for draft {draft_sha}; refusing to publish"
        )
    existing = ledger.get_effect(key)
    if existing is not None and existing.done:
        return PublishOutcome(
            key=key,
            status="already_applied",
            revision=existing.revision or "",
            target=existing.target,
            effect=existing,
        )

    job = ledger.check_fence(job_id, fence)
    if job.draft_sha != draft_sha:
        raise PolicyViolation(
            f"job {job_id}'s current draft is {job.draft_sha}, not the approved {draft_sha}"
        )
    if job.state is not JobState.approved:
        raise PolicyViolation(f"job {job_id} is {job.state}; only an approved job is published")
    edit_list = _edits_for(edits, draft_sha, job.page_url)
    target = publisher.target_for(job.page_url)

    if existing is not None and existing.status is EffectStatus.pending:
        # A crash came after the intent: the write may or may not have happened. Look before writing.
        content = publisher.read(target)
        in_place = all(publisher.contains(edit, content) for edit in edit_list)
        status: Literal["applied", "reconciled"] = "reconciled" if in_place else "applied"
        # With every edit in place apply() writes nothing by contract; it returns the revision and lets
        # the publisher finish its own bookkeeping (e.g. a git commit the crash interrupted).
        revision = _apply(ledger, publisher, target, edit_list, key, fence)
    else:
        ledger.begin_effect(
            job_id,
            PUBLISH_STEP,
            draft_sha,
            target=target.location,
            fence=fence,
            request={
                "key": key,
                "publisher": publisher.name,
                "target": target.model_dump(mode="json"),
                "edits_sha": edits_sha(edit_list),
                "edits": [edit.model_dump(mode="json") for edit in edit_list],
            },
        )
        fault_point("after_publish_intent")
        status = "applied"
        revision = _apply(ledger, publisher, target, edit_list, key, fence)

    fault_point("after_publish_write")  # the crash window the reconcile path exists for
    effect = ledger.complete_effect(
        key,
        revision=revision,
        fence=fence,
        status=EffectStatus(status),
        response={"key": key, "status": status, "revision": revision, "target": target.location},
    )
    return PublishOutcome(
        key=key,
        status=status if effect.status.value == status else "already_applied",
        revision=effect.revision or revision,
        target=target.location,
        effect=effect,
    )


def _apply(
    ledger: Ledger, publisher: Publisher, target: Target, edits: Sequence[Edit], key: str, fence: int
) -> str:
    # Narrow the window for a worker that lost its lease while it was computing.
    ledger.check_fence(_job_of(key), fence)
    try:
        return publisher.apply(target, edits, key)
    except PermanentError as exc:
        ledger.fail_effect(key, f"{type(exc).__name__}: {exc}", fence=fence)
        raise


def _job_of(key: str) -> str:
    """The job id inside an effect key."""
    return key.split(":", 1)[0]


def _edits_for(edits: Draft | Sequence[Edit], expected_sha: str, page_url: str) -> list[Edit]:
    if isinstance(edits, Draft):
        actual = draft_hash(edits)
        if actual != expected_sha:
            raise PolicyViolation(f"the draft given hashes to {actual}, not the approved {expected_sha}")
        if edits.page_url != page_url:
            raise PolicyViolation(f"the draft is for {edits.page_url!r}, the job for {page_url!r}")
        return list(edits.edits)
    return list(edits)
