"""`make test` runs in stages: lint, the fast tests, then the slow ones (soak, browser,
live worker). Every test runs in exactly one pytest stage, and a test that starts a
real worker or a browser is never in the fast one."""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path

import pytest

from tests import conftest

ROOT = Path(__file__).resolve().parents[2]
STAGE_MARKERS = ("soak", "browser", "worker")


def _makefile_expression(name: str) -> str:
    match = re.search(rf"^{name} := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"{name} is not in the Makefile"
    return match.group(1).strip()


def test_every_test_runs_in_exactly_one_stage():
    fast, slow = _makefile_expression("FAST_TESTS"), _makefile_expression("SLOW_TESTS")
    assert set(re.findall(r"\w+", fast + " " + slow)) - {"and", "or", "not"} == set(STAGE_MARKERS)
    for values in itertools.product([False, True], repeat=len(STAGE_MARKERS)):
        marks = dict(zip(STAGE_MARKERS, values, strict=True))
        in_fast = eval(fast, {}, marks)  # noqa: S307 - the Makefile's own marker expression
        in_slow = eval(slow, {}, marks)  # noqa: S307
        assert in_fast != in_slow, marks


def test_the_stage_markers_are_registered():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    registered = {m.split(":")[0] for m in config["tool"]["pytest"]["ini_options"]["markers"]}
    assert set(STAGE_MARKERS) <= registered


class _Item:
    def __init__(self, *fixtures: str, marks: tuple[str, ...] = ()) -> None:
        self.fixturenames = list(fixtures)
        self.marks = set(marks)

    def get_closest_marker(self, name: str):
        return name if name in self.marks else None

    def add_marker(self, name: str) -> None:
        self.marks.add(name)


@pytest.mark.parametrize(
    ("fixtures", "marks"),
    [
        (("db", "celery_worker_process"), {"worker"}),
        (("live_server", "browser"), {"browser"}),
        (("db", "client"), set()),
    ],
)
def test_a_test_that_starts_a_worker_or_a_browser_is_marked_slow(fixtures, marks):
    item = _Item(*fixtures)
    conftest.pytest_collection_modifyitems(None, [item])
    assert item.marks == marks
