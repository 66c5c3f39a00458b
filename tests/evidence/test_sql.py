"""evidence.sql against the ORM: the hand-written statements count what the ORM
form of the same question counts."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.db.models import QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from evidence import sql
from evidence.metrics import Scope, decisions_rows, field_agreement_for
from reviews.models import Decision, RejectReason
from tests.console.factories import DecisionFactory, backdate
from tests.factories import ProposalFactory, WorkflowFactory

pytestmark = pytest.mark.django_db

FIELDS = ("amount", "order_number", "reason", "note", "to")


def field_edit_counts_orm(decisions: QuerySet[Decision]) -> list[sql.FieldEditCount]:
    """The ORM form: every edited decision's arguments and diff loaded, keys
    counted in Python."""
    counts: dict[tuple, list[int]] = {}
    for wf, day, tool, arguments, diff in (
        decisions.filter(verdict=Decision.Verdict.EDIT)
        .annotate(day=TruncDate("created_at"))
        .values_list("proposal__workflow", "day", "proposal__tool", "proposal__arguments", "diff")
    ):
        named = set(arguments) if isinstance(arguments, dict) else set()
        changed = set(diff) if isinstance(diff, dict) else set()
        for field in named | changed:
            count = counts.setdefault((wf, day, tool, field), [0, 0])
            count[0] += 1
            count[1] += field in changed
    return [(*key, n, c) for key, (n, c) in counts.items()]


@pytest.fixture
def decisions():
    """Decisions over ten days in two workflows and three tools: accepted and
    rejected ones whose diffs must not count, edits with overlapping argument and
    diff keys, arguments that are not an object, late evenings (the day is local)."""
    rng = random.Random(8)
    workflows = [WorkflowFactory(slug="refunds"), WorkflowFactory(slug="access")]
    now = timezone.now()
    for i in range(120):
        arguments = dict.fromkeys(rng.sample(FIELDS, rng.randint(0, 3)), "x")
        if i % 17 == 0:
            arguments = ["not", "an", "object"]
        verdict = rng.choice(list(Decision.Verdict))
        diff = {f: ["x", "y"] for f in rng.sample(FIELDS, rng.randint(0, 2))}
        decision = DecisionFactory(
            proposal=ProposalFactory(
                run__work_item__workflow=rng.choice(workflows),
                tool=rng.choice(("create_refund", "send_message", "grant_access")),
                arguments=arguments,
            ),
            verdict=verdict,
            diff=diff,
            reason=RejectReason.OTHER if verdict == Decision.Verdict.REJECT else "",
        )
        at = now - timedelta(days=rng.randint(0, 9), hours=rng.randint(0, 23), minutes=i)
        backdate(decision, created_at=at)
    return workflows, now


def test_field_edit_counts_equal_the_orm_form(decisions):
    workflows, now = decisions
    scope = Scope(workflow_ids=tuple(w.pk for w in workflows), since=now - timedelta(days=30))
    rows = decisions_rows(scope)
    counted = sql.field_edit_counts(rows)
    assert counted  # the fixture has edits
    assert sorted(counted) == sorted(field_edit_counts_orm(rows))


def test_field_edit_counts_follow_the_row_set(decisions):
    workflows, now = decisions
    scope = Scope.for_workflow(workflows[1], since=now - timedelta(days=4), tool="send_message")
    rows = decisions_rows(scope)
    assert sorted(sql.field_edit_counts(rows)) == sorted(field_edit_counts_orm(rows))
    assert {wf for wf, *_ in sql.field_edit_counts(rows)} <= {workflows[1].pk}


def test_field_agreement_sums_the_grouped_counts(decisions):
    workflows, now = decisions
    scope = Scope.for_workflow(workflows[0], since=now - timedelta(days=30))
    totals: dict[str, list[int]] = {}
    for *_, field, n, changed in field_edit_counts_orm(decisions_rows(scope)):
        total = totals.setdefault(field, [0, 0])
        total[0] += n
        total[1] += changed
    result = {f.field: [f.edited_decisions, f.changed] for f in field_agreement_for(scope)}
    assert result == totals
