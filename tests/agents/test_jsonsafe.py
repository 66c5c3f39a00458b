"""What a trace step or an escalation packet stores is always storable."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from agents.jsonsafe import CUT, MAX_DEPTH, error_text, json_safe
from agents.models import Escalation, Run, Step
from tests.factories import RunFactory


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def depth_of(value) -> int:
    depth = 0
    while isinstance(value, list) and value:
        value, depth = value[0], depth + 1
    return depth + 1


def test_non_finite_numbers_become_their_names():
    value = {"a": float("nan"), "b": [float("inf"), float("-inf")], "c": Decimal("NaN")}
    assert json_safe(value) == {"a": "NaN", "b": ["Infinity", "-Infinity"], "c": "NaN"}


def test_nul_and_lone_surrogates_are_replaced_and_pairs_kept():
    assert json_safe({"k\x00": "a\x00b\ud800c😀"}) == {"k\ufffd": "a\ufffdb\ufffdc😀"}


def test_an_ordinary_value_is_unchanged():
    value = {"results": [{"slug": f"doc-{i}", "score": i / 7} for i in range(200)]}
    assert json_safe(value) == json.loads(json.dumps(value))


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 50_000])
def test_deep_nesting_is_cut_without_recursion(depth):
    safe = json_safe({"deep": nested(depth)})
    assert depth_of(safe["deep"]) == MAX_DEPTH
    assert CUT.format(depth=MAX_DEPTH) in json.dumps(safe)


def test_a_broken_message_does_not_break_the_error_text():
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert "Broken" in error_text(Broken())


@pytest.mark.django_db
def test_postgresql_takes_what_json_safe_returns():
    """Each of these is refused by PostgreSQL as it is."""
    run = RunFactory(status=Run.Status.RUNNING)
    hostile = {"n": float("nan"), "s": "nul\x00 \udc00", "d": nested(5_000)}
    step = Step.objects.create(
        run=run, index=1, kind=Step.Kind.NOTE, name="x", output=json_safe(hostile)
    )
    Escalation.objects.create(
        workflow=run.work_item.workflow, work_item=run.work_item, run=run,
        reason=Escalation.Reason.DEAD_LETTER, packet=json_safe(hostile),
    )  # fmt: skip
    step.refresh_from_db()
    assert step.output["n"] == "NaN"
