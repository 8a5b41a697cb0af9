"""Serve every deployment of ``prefect.yaml`` from one process: sitesteward without workers.

``prefect.serve`` polls the API for scheduled runs of these deployments and runs them as subprocesses of
this one, so schedules, the UI's "Run" button and suspend/resume all work as with a worker. The list,
schedules and parameters come from ``prefect.yaml`` (one source of truth); ``{{ prefect.variables.X }}``
placeholders are resolved when serving starts.

    python -m deployments.serve                      # all four
    python -m deployments.serve --only refresh-page  # just some
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import yaml
from prefect import Flow, serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Schedule
from prefect.utilities.asyncutils import run_coro_as_sync
from prefect.utilities.templating import resolve_variables
from pydantic import BaseModel, ConfigDict, Field

from deployments import PREFECT_YAML


class ScheduleSpec(BaseModel):
    """One entry of a deployment's ``schedules:`` list (the subset sitesteward uses)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str | None = None
    interval: float | None = Field(default=None, gt=0, description="Seconds.")
    timezone: str | None = None
    active: bool = True

    def to_schedule(self) -> Schedule:
        """The Prefect schedule."""
        interval = timedelta(seconds=self.interval) if self.interval is not None else None
        return Schedule(cron=self.cron, interval=interval, timezone=self.timezone, active=self.active)


class DeploymentSpec(BaseModel):
    """One entry of ``prefect.yaml``'s ``deployments:`` list (fields ``prefect deploy`` also reads)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    entrypoint: str = Field(description="path/to/module.py:flow_function, relative to the project root.")
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    concurrency_limit: int | None = None
    schedules: list[ScheduleSpec] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)

    def load_flow(self) -> Flow[..., Any]:
        """Import the entrypoint's flow as a module attribute (never executing the file twice)."""
        path, _, attribute = self.entrypoint.partition(":")
        module = importlib.import_module(Path(path).with_suffix("").as_posix().replace("/", "."))
        return cast(Flow[..., Any], getattr(module, attribute))


def load_specs(path: Path = PREFECT_YAML) -> list[DeploymentSpec]:
    """The deployments listed in ``prefect.yaml`` (YAML anchors resolved, placeholders left as they are).

    Args:
        path: The ``prefect.yaml`` to read.

    Returns:
        One spec per deployment, in file order.
    """
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [DeploymentSpec.model_validate(item) for item in document.get("deployments") or []]


def build_deployments(only: Sequence[str] | None = None, path: Path = PREFECT_YAML) -> list[RunnerDeployment]:
    """Runner deployments for ``prefect.serve``, with variables resolved against the current API.

    Args:
        only: Deployment names to include (default: all).
        path: The ``prefect.yaml`` to read.

    Returns:
        The deployments, in file order.

    Raises:
        ValueError: a name in ``only`` is not in the file.
    """
    specs = load_specs(path)
    unknown = sorted(set(only or ()) - {spec.name for spec in specs})
    if unknown:
        raise ValueError(f"no deployment named {', '.join(unknown)} in {path}")
    chosen = [spec for spec in specs if not only or spec.name in only]
    deployments: list[RunnerDeployment] = []
    for spec in chosen:
        parameters = run_coro_as_sync(resolve_variables(spec.parameters))
        deployment = cast(
            RunnerDeployment,
            spec.load_flow().to_deployment(
                name=spec.name,
                description=spec.description,
                tags=spec.tags,
                concurrency_limit=spec.concurrency_limit,
                schedules=[schedule.to_schedule() for schedule in spec.schedules],
                parameters=parameters,
            ),
        )
        deployments.append(deployment)
    return deployments


def serve_deployments(only: Sequence[str] | None = None, *, limit: int | None = None) -> None:
    """Serve the deployments until interrupted (Ctrl-C pauses their schedules on the way out).

    Args:
        only: Deployment names to serve (default: all of ``prefect.yaml``).
        limit: Flow runs executed at the same time at most (default: no limit).
    """
    serve(*build_deployments(only), limit=limit)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m deployments.serve [--only NAME ...] [--limit N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="Serve only this deployment (repeatable).")
    parser.add_argument("--limit", type=int, default=None, help="Concurrent flow runs at most.")
    args = parser.parse_args(argv)
    serve_deployments(args.only, limit=args.limit)


if __name__ == "__main__":
    main()
