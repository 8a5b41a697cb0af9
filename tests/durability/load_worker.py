"""A load-test worker process: run jobs with the plain engine, one job id per message.

    python -m tests.durability.load_worker ARM_AFTER FAULT_POINT LEASE_SECONDS

For every job id read (a stdin line), one JSON line goes to stdout: ``{"job_id", "state"}`` or
``{"job_id", "error"}`` (a transient failure within budget; the supervisor queues the job again). After
``ARM_AFTER`` jobs the fault point (``-``: none) is armed, so the supervisor's seeded kills land anywhere in
a run, not only at its start. Everything else (ledger URL, data directory, LLM endpoint and timeout) comes
from the environment the supervisor sets.

The load harness starts its workers with :func:`serve` instead, from a fork server that has imported this
module once (a fresh interpreter spends ~1.5 s of CPU importing it, and a load run with seeded kills starts
dozens of workers): the same loop in a process of its own, with the environment the supervisor gives it
and job ids and answers passed over pipes.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection

from sitesteward.engine import JobOptions, PlainHost, PlainSteps, run_job
from sitesteward.ledger import Ledger
from sitesteward.llm import build_client, select_drafter
from sitesteward.settings import get_settings


def work(
    arm_after: int, fault: str, lease: float, jobs: Iterable[str], answer: Callable[[str], None]
) -> None:
    """Run each job id of ``jobs`` to its next resting point and ``answer`` one JSON line for it."""
    logging.basicConfig(level=logging.WARNING)
    ledger = Ledger.open(get_settings().ledger_url)
    steps = PlainSteps(retry_delays=(0.05, 0.2, 0.5), verify_delays=(0.05, 0.2, 0.5), pooled=True)
    host = PlainHost()
    options = JobOptions(lease_seconds=lease)
    # One model client per process (its TLS setup costs ~80 ms); a drafter per job (the job's budget).
    client = build_client(get_settings(), timeout=get_settings().llm_timeout_seconds)
    done = 0
    for line in jobs:
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
            result: dict[str, object] = {"job_id": job_id, "state": outcome.state}
        except Exception as exc:  # reported to the supervisor, which queues the job again
            result = {"job_id": job_id, "error": f"{type(exc).__name__}: {exc}"[:500]}
        result["reconnects"] = ledger.reconnects
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result["cpu"] = usage.ru_utime + usage.ru_stime  # this process's CPU so far (the run's summary)
        answer(json.dumps(result))
    steps.close()
    ledger.close()


def _received(connection: Connection) -> Iterable[str]:
    while True:
        try:
            yield connection.recv_bytes().decode()
        except EOFError:  # the supervisor closed its end: no more jobs
            return


def serve(
    arm_after: int,
    fault: str,
    lease: float,
    environment: dict[str, str],
    jobs: Connection,
    answers: Connection,
) -> None:
    """:func:`work` in a process forked from the harness's fork server (``multiprocessing``).

    The process takes exactly ``environment`` (what the supervisor would have given a new interpreter),
    sends its output where a started worker's went (nowhere), and talks to the supervisor over the pipes.
    """
    os.environ.clear()
    os.environ.update(environment)
    get_settings.cache_clear()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    work(arm_after, fault, lease, _received(jobs), lambda line: answers.send_bytes(line.encode()))


def main() -> int:
    arm_after, fault, lease = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])

    def answer(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    work(arm_after, fault, lease, sys.stdin, answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
