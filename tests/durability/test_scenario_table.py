"""The README's scenario table cannot drift from the code: its rows are the scenario markers, all passing.

The markers are collected without running anything (``pytest --collect-only -m scenario`` in a subprocess,
the collector the table's writer uses). Regenerate the table with ``python3 scripts/dev.py test --all
--write-scenarios``.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.durability.harness import AFTER_REVIEW, BEFORE_REVIEW
from tests.durability.scenarios import (
    BEGIN,
    END,
    REGENERATE,
    Row,
    Spec,
    collect_markers,
    group,
    is_pass,
    read_table,
    render,
    replace_block,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def markers() -> list[tuple[str, Spec]]:
    return collect_markers(ROOT)


def test_the_readme_rows_are_the_markers_in_the_code(
    markers: list[tuple[str, Spec]], request: pytest.FixtureRequest
) -> None:
    rows = group(markers)
    assert rows, "no @pytest.mark.scenario test was collected: the collector is broken"
    names = Counter(row.spec.name for row in rows)
    assert not [n for n, count in names.items() if count > 1], f"scenario names used twice: {names}"
    plugin = request.config.pluginmanager.get_plugin("sitesteward-scenarios")
    if plugin is not None and plugin.write:
        return  # this very session rewrites the table from these markers when it ends
    readme = read_table((ROOT / "README.md").read_text(encoding="utf-8"))
    in_code = Counter(row.spec for row in rows)
    in_readme = Counter(spec for spec, _ in readme)
    missing = sorted(s.name for s in in_code - in_readme)
    stale = sorted(s.name for s in in_readme - in_code)
    assert not missing and not stale, (
        f"README's scenario table is out of date (regenerate: {REGENERATE}).\n"
        f"markers without a README row: {missing}\nREADME rows without a marker: {stale}"
    )
    not_passed = [(spec.name, result) for spec, result in readme if not is_pass(result)]
    assert not not_passed, f"README rows not claiming a full pass (regenerate: {REGENERATE}): {not_passed}"


def test_the_kill_matrix_is_one_row_with_every_point(markers: list[tuple[str, Spec]]) -> None:
    kill = [row for row in group(markers) if row.spec.name.startswith("kill matrix")]
    points = len(BEFORE_REVIEW) + len(AFTER_REVIEW)
    assert len(kill) == 1 and len(kill[0].nodeids) == points, [(r.spec.name, len(r.nodeids)) for r in kill]


def test_render_and_read_round_trip_with_counts() -> None:
    spec = Spec("a | b", "faults", "checks")
    row = Row(spec, files=["tests/x.py"], nodeids=[f"tests/x.py::t[{i}]" for i in range(4)])
    row.outcomes = {row.nodeids[0]: "passed", row.nodeids[1]: "passed", row.nodeids[2]: "failed"}
    other = Row(Spec("b", "f", "c"), files=["tests/y.py"], nodeids=["tests/y.py::t"])
    other.outcomes = {"tests/y.py::t": "passed"}
    never = Row(Spec("c", "f", "c"), nodeids=["n"])
    block = render([row, other, never], command="cmd", when=datetime.now(UTC))
    readme = replace_block(f"intro\n{BEGIN}\nold\n{END}\nafter\n", block)
    assert readme.startswith("intro\n") and readme.endswith("\nafter\n") and "old" not in readme
    assert read_table(readme) == [
        (spec, "2/4 passed, 1 failed, 1 not run"),
        (Spec("b", "f", "c"), "1/1 passed"),
        (Spec("c", "f", "c"), "not run"),
    ]
    assert [is_pass(result) for _, result in read_table(readme)] == [False, True, False]
    with pytest.raises(ValueError, match="no"):
        read_table("no table here")
