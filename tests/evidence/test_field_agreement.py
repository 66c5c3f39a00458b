"""Field-level agreement against a generator that knows what it made."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from evidence.metrics import Scope, decisions_rows, field_agreement_for, window_start
from evidence.metrics.definitions import field_edit_counts
from reviews.models import Decision, RejectReason
from tests.console.factories import DecisionFactory, backdate
from tests.factories import ProposalFactory, WorkflowFactory

pytestmark = pytest.mark.django_db

FIELDS = ("amount", "order_number", "reason", "note", "to")
TOOLS = ("create_refund", "send_message", "grant_access")


@pytest.fixture
def made():
    """Decisions over ten days in two workflows and three tools, of every verdict
    (only edits count), with arguments and diffs sharing keys, arguments that are
    not an object, and late evenings (the day is the local one). Returns the
    workflows, now, and what each edit should add: {(workflow, day, tool, field):
    [named, changed]}."""
    rng = random.Random(8)
    workflows = [WorkflowFactory(slug="refunds"), WorkflowFactory(slug="access")]
    now = timezone.now()
    expected: dict[tuple, list[int]] = {}
    for i in range(120):
        workflow, tool = rng.choice(workflows), rng.choice(TOOLS)
        arguments: object = dict.fromkeys(rng.sample(FIELDS, rng.randint(0, 3)), "x")
        if i % 17 == 0:
            arguments = ["not", "an", "object"]
        diff = {f: ["x", "y"] for f in rng.sample(FIELDS, rng.randint(0, 2))}
        verdict = rng.choice(list(Decision.Verdict))
        decision = DecisionFactory(
            proposal=ProposalFactory(
                run__work_item__workflow=workflow, tool=tool, arguments=arguments
            ),
            verdict=verdict,
            diff=diff,
            reason=RejectReason.OTHER if verdict == Decision.Verdict.REJECT else "",
        )
        at = now - timedelta(days=rng.randint(0, 9), hours=rng.randint(0, 23), minutes=i)
        backdate(decision, created_at=at)
        if verdict != Decision.Verdict.EDIT:
            continue
        named = set(arguments) if isinstance(arguments, dict) else set()
        for field in named | set(diff):
            count = expected.setdefault((workflow.pk, timezone.localdate(at), tool, field), [0, 0])
            count[0] += 1
            count[1] += field in diff
    return workflows, now, expected


def test_field_edit_counts_count_each_edit_per_workflow_day_tool_and_field(made):
    workflows, now, expected = made
    scope = Scope(workflow_ids=tuple(w.pk for w in workflows), since=now - timedelta(days=30))
    counted = {
        (wf, day, tool, f): [n, c]
        for wf, day, tool, f, n, c in field_edit_counts(decisions_rows(scope))
    }
    assert counted == expected


def test_field_agreement_sums_a_scope_s_edits_per_field(made):
    workflows, now, expected = made
    since = window_start(5, now)  # whole days, so the generator's days say what is in it
    scope = Scope.for_workflow(workflows[1], since=since, tool="send_message")
    totals: dict[str, list[int]] = {}
    for (wf, day, tool, field), (n, changed) in expected.items():
        if (wf, tool) == (workflows[1].pk, "send_message") and day >= since.date():
            total = totals.setdefault(field, [0, 0])
            total[0] += n
            total[1] += changed
    assert totals  # the scope has edits
    fields = field_agreement_for(scope)
    assert {f.field: [f.edited_decisions, f.changed] for f in fields} == totals
    # The most changed first, then by name.
    assert [f.field for f in fields] == sorted(totals, key=lambda f: (-totals[f][1], f))
