"""Running sitesteward as a Prefect project: bootstrap (work pool, blocks, variables) and serving.

``prefect.yaml`` at the repository root lists the deployments; :mod:`deployments.serve` serves the same
list from one process for people without workers.
"""

from pathlib import Path

#: The repository root (where ``prefect.yaml`` lives).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The deployments file ``prefect deploy`` and :mod:`deployments.serve` read.
PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"
#: The process work pool ``prefect.yaml`` deploys to (``definitions.work_pools.process``).
WORK_POOL = "sitesteward-process"
