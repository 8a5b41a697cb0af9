"""A load-test worker process: run jobs with the plain engine, one job id per stdin line.

    python -m tests.durability.load_worker ARM_AFTER FAULT_POINT LEASE_SECONDS

For every job id read, one JSON line goes to stdout: ``{"job_id", "state"}`` or ``{"job_id", "error"}``
(a transient failure within budget; the supervisor queues the job again). After ``ARM_AFTER`` jobs the
fault point (``-``: none) is armed, so the supervisor's seeded kills land anywhere in a run, not only at
its start. Everything else (ledger URL, data directory, LLM endpoint and timeout) comes from the
environment the supervisor sets.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from sitesteward.engine import JobOptions, PlainHost, PlainSteps, run_job
from sitesteward.ledger import Ledger
from sitesteward.llm import build_client, select_drafter
from sitesteward.settings import get_settings


def main() -> int:
    arm_after, fault, lease = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    logging.basicConfig(level=logging.WARNING)
    ledger = Ledger.open(get_settings().ledger_url)
    steps = PlainSteps(retry_delays=(0.05, 0.2, 0.5), verify_delays=(0.05, 0.2, 0.5), pooled=True)
    host = PlainHost()
    options = JobOptions(lease_seconds=lease)
    # One model client per process (its TLS setup costs ~80 ms); a drafter per job (the job's budget).
    client = build_client(get_settings(), timeout=get_settings().llm_timeout_seconds)
    done = 0
    for line in sys.stdin:
        job_id = line.strip()
        if not job_id:
            continue
        if done == arm_after and fault != "-":
            os.environ["SITESTEWARD_FAULT_POINTS"] = f"{fault}=kill"
            get_settings.cache_clear()
        done += 1
        try:
            # A drafter per job: it carries the job's token budget.
            drafter = select_drafter(get_settings(), client=client)
            outcome = run_job(ledger, job_id, host=host, steps=steps, drafter=drafter, options=options)
            answer: dict[str, object] = {"job_id": job_id, "state": outcome.state}
        except Exception as exc:  # reported to the supervisor, which queues the job again
            answer = {"job_id": job_id, "error": f"{type(exc).__name__}: {exc}"[:500]}
        answer["reconnects"] = ledger.reconnects
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    steps.close()
    ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
