"""Fault points: inert unless armed, loud about typos, and really fatal when armed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sitesteward.faults import FAULT_POINTS, fault_point
from sitesteward.settings import get_settings


def test_unarmed_points_do_nothing() -> None:
    for name in FAULT_POINTS:
        fault_point(name)


def test_an_unknown_point_is_an_error_not_a_silent_no_op() -> None:
    with pytest.raises(ValueError, match="unknown fault point"):
        fault_point("after_pubilsh_write")


def test_an_armed_point_kills_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITESTEWARD_FAULT_POINTS", "after_draft_task=kill")
    get_settings.cache_clear()
    fault_point("after_publish_write")  # another point stays inert
    code = "from sitesteward.faults import fault_point; fault_point('after_draft_task'); print('survived')"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == -9 and "survived" not in done.stdout
