"""A worker process for crash tests: run one ``refresh_page`` job and exit.

    python -m tests.durability.worker JOB_ID LEASE_SECONDS

Everything else comes from the environment the test sets: ``PREFECT_API_URL`` (the shared test
server), ``SITESTEWARD_DATA_DIR`` (ledger, results), the LLM endpoint and ``SITESTEWARD_FAULT_POINTS``.
"""

from __future__ import annotations

import sys

from flows.refresh_page import RefreshParams, refresh_page


def main() -> int:
    job_id, lease = sys.argv[1], float(sys.argv[2])
    outcome = refresh_page(RefreshParams(job_id=job_id, lease_seconds=lease))
    print(outcome.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
