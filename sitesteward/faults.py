"""Named fault points for crash tests: ``fault_point("after_publish_write")``.

Armed only through ``SITESTEWARD_FAULT_POINTS`` (tests set it; nothing else does), e.g.
``after_publish_write=kill`` or ``after_draft_task=kill,before_verify=stop``. An armed point SIGKILLs (or
SIGSTOPs) the current process right there, exactly like a worker dying mid-step. Unarmed, a point is a
dictionary lookup and nothing else.

Every point the job engine passes through is listed in :data:`FAULT_POINTS`, so a test can walk them all.
"""

from __future__ import annotations

import os
import signal

from sitesteward.settings import get_settings

#: Every fault point in the job engine, in the order an uninterrupted job passes them.
FAULT_POINTS: tuple[str, ...] = (
    "after_lease",
    "after_compare_task",
    "after_compare_commit",
    "after_source_commit",
    "after_draft_task",
    "after_draft_commit",
    "after_link_commit",
    "after_validate_commit",
    "after_approval_request",
    "after_approval_decision",
    "before_publish",
    "after_publish_intent",
    "after_publish_write",
    "after_publish_commit",
    "before_verify",
    "after_verify_commit",
)

_ACTIONS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP}


def _armed() -> dict[str, str]:
    spec = get_settings().fault_points.strip()
    if not spec:
        return {}
    armed: dict[str, str] = {}
    for item in spec.split(","):
        name, _, action = item.strip().partition("=")
        armed[name.strip()] = (action or "kill").strip()
    return armed


def fault_point(name: str) -> None:
    """Die (or freeze) here if a test armed this point; otherwise do nothing.

    Raises:
        ValueError: ``name`` is not a declared fault point (a typo would silently never fire).
    """
    if name not in FAULT_POINTS:
        raise ValueError(f"unknown fault point {name!r}")
    action = _armed().get(name)
    if action is None:
        return
    os.kill(os.getpid(), _ACTIONS.get(action, signal.SIGKILL))
