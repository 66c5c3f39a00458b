"""The dashboards' rollups (MetricDay): equal to the live metrics, current, idempotent."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agents.models import Run, Step, WorkItem
from evidence import metrics
from evidence.models import MetricDay
from evidence.tasks import metric_rollup_task
from governance.models import Workflow
from reviews.models import Decision, RejectReason
from tests.console.evidence import make_evidence
from tests.console.factories import (
    DecisionFactory,
    ResolutionFactory,
    StepFactory,
    backdate,
)
from tests.factories import EscalationFactory, ProposalFactory, RunFactory, WorkItemFactory

TOOLS = ("create_refund", "send_message", "lookup_order")
FIELDS = ("amount", "order_number", "reason", "note")


def _random_evidence(workflow: Workflow, now: datetime, *, items: int, seed: int) -> None:
    """Work items spread over the last twelve days, with everything the metrics count:
    decisions (some made days after their proposal), tool steps with errors, budget
    trips, retries, outcomes, escalations (some days after the item), resolutions."""
    rng = random.Random(seed)
    for _ in range(items):
        received = now - timedelta(days=rng.randint(0, 12), minutes=rng.randint(0, 1439))
        received = min(received, now - timedelta(minutes=5))

        def later(at: datetime, *, max_days: int = 2) -> datetime:
            return min(at + timedelta(minutes=rng.randint(0, max_days * 1440)), now)

        item = backdate(WorkItemFactory(workflow=workflow), created_at=received)
        run = RunFactory(
            work_item=item,
            cost_usd=Decimal(rng.randint(0, 500)) / 1000,
            tool_cost_usd=Decimal(rng.randint(0, 100)) / 1000,
            tool_calls=rng.randint(0, 6),
            retries=rng.choice((0, 0, 0, 1, 2)),
            stop_reason=rng.choice([Run.StopReason.COMPLETED] * 4 + list(Run.BUDGET_REASONS[:2])),
            started_at=received,
        )
        run_at = later(received, max_days=0)
        backdate(run, created_at=run_at)
        for index in range(rng.randint(0, 3)):
            step = StepFactory(
                run=run,
                index=index + 1,
                name=rng.choice(TOOLS),
                error=rng.choice(["", "", "", "HTTP 502"]),
            )
            backdate(step, created_at=later(run_at, max_days=1))
        arguments = dict.fromkeys(rng.sample(FIELDS, rng.randint(1, 3)), "x")
        proposal = ProposalFactory(run=run, tool=rng.choice(TOOLS), arguments=arguments)
        if rng.random() < 0.85:
            verdict = rng.choice(
                [Decision.Verdict.ACCEPT] * 3 + [Decision.Verdict.EDIT, Decision.Verdict.REJECT]
            )
            extra: dict = {}
            if verdict == Decision.Verdict.EDIT:
                extra["diff"] = {f: ["x", "y"] for f in rng.sample(FIELDS, rng.randint(1, 2))}
            if verdict == Decision.Verdict.REJECT:
                extra["reason"] = rng.choice(RejectReason.values)
            decision = DecisionFactory(
                proposal=proposal, verdict=verdict, seconds_spent=rng.randint(5, 300), **extra
            )
            backdate(decision, created_at=later(run_at, max_days=3))
        if rng.random() < 0.7:
            WorkItem.objects.filter(pk=item.pk).update(
                status=WorkItem.Status.RESOLVED,
                succeeded=rng.random() < 0.8,
                resolved_at=later(received, max_days=3),
            )
        for _ in range(rng.choice((0, 0, 0, 1, 2))):
            escalation = EscalationFactory(
                work_item=item, workflow=workflow, run=rng.choice((run, None))
            )
            backdate(escalation, created_at=later(received, max_days=4))
            if rng.random() < 0.5:
                resolution = ResolutionFactory(
                    escalation=escalation,
                    minutes_saved=rng.randint(0, 60),
                    packet_rating=rng.randint(1, 5),
                )
                backdate(resolution, created_at=later(escalation.created_at, max_days=1))


def _assert_same(rolled: object, live: object, path: str = "") -> None:
    """Equal, allowing for float rounding and PostgreSQL's rounding of a mean interval."""
    if dataclasses.is_dataclass(rolled) and not isinstance(rolled, type):
        assert type(rolled) is type(live), path
        for f in dataclasses.fields(rolled):
            _assert_same(getattr(rolled, f.name), getattr(live, f.name), f"{path}.{f.name}")
    elif isinstance(rolled, dict):
        assert list(rolled) == list(live), path
        for key in rolled:
            _assert_same(rolled[key], live[key], f"{path}[{key}]")
    elif isinstance(rolled, list | tuple):
        assert len(rolled) == len(live), path
        for i, (a, b) in enumerate(zip(rolled, live, strict=True)):
            _assert_same(a, b, f"{path}[{i}]")
    elif isinstance(rolled, float):
        assert live == pytest.approx(rolled, rel=1e-9), path
    elif isinstance(rolled, timedelta):
        assert abs(rolled - live) <= timedelta(microseconds=1), path
    else:
        assert rolled == live, path


def _assert_rollup_is_live(workflow: Workflow, since: datetime, now: datetime) -> None:
    board = metrics.dashboard_metrics(workflow, since=since, now=now)
    scope = metrics.Scope.for_workflow(workflow, since=since)
    _assert_same(board.metrics, metrics.workflow_metrics(scope, workflow))
    _assert_same(board.daily, metrics.daily_rollup(scope, now=now))
    _assert_same(board.agreement_by_tool, metrics.agreement_by_tool(scope))


def _window(now: datetime, days: int) -> datetime:
    return metrics.start_of_today(now) - timedelta(days=days - 1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollup_equals_the_live_metrics_on_random_evidence(workflow, other_workflow, seed):
    now = timezone.now()
    _random_evidence(workflow, now, items=60, seed=seed)
    _random_evidence(other_workflow, now, items=15, seed=seed + 100)
    for days in (1, 7, 10, 30):
        # The first read rolls the closed days up, the second reads them back.
        _assert_rollup_is_live(workflow, _window(now, days), now)
        _assert_rollup_is_live(workflow, _window(now, days), now)
    today = timezone.localdate(now)
    closed = 30 - (today - metrics.last_closed_day(now)).days
    assert MetricDay.objects.filter(workflow=workflow, tool="").count() == closed
    rows, daily = metrics.ops_overview_rolled(
        Workflow.objects.order_by("slug"), since=_window(now, 7), now=now
    )
    live = metrics.ops_overview(Workflow.objects.order_by("slug"), since=_window(now, 7), now=now)
    _assert_same(rows, live)
    ids = (workflow.pk, other_workflow.pk)
    scope = metrics.Scope(workflow_ids=ids, since=_window(now, 7))
    # The overview's chart is spend per day: model and tool cost.
    spend = [(d.day, d.model_usd, d.tool_usd) for d in metrics.daily_rollup(scope, now=now)]
    assert [(d.day, d.model_usd, d.tool_usd) for d in daily] == spend


def test_a_late_decision_on_an_old_proposal_counts_on_the_day_it_was_made(workflow):
    now = timezone.now()
    since = _window(now, 30)
    old_day = now - timedelta(days=5)
    run = backdate(RunFactory(work_item__workflow=workflow), created_at=old_day)
    proposal = backdate(ProposalFactory(run=run), created_at=old_day)
    decided = DecisionFactory(
        proposal=ProposalFactory(run=run, sequence=2), verdict=Decision.Verdict.ACCEPT
    )
    backdate(decided, created_at=old_day)
    assert metrics.dashboard_metrics(workflow, since=since, now=now).metrics.decisions == 1
    assert MetricDay.objects.filter(workflow=workflow, day=old_day.date(), tool="").exists()

    DecisionFactory(  # decided today
        proposal=proposal, verdict=Decision.Verdict.REJECT, reason=RejectReason.WRONG_AMOUNT
    )
    board = metrics.dashboard_metrics(workflow, since=since, now=now)
    assert (board.metrics.agreement.accepted, board.metrics.agreement.rejected) == (1, 1)
    assert board.daily[-1].rejected == 1
    _assert_rollup_is_live(workflow, since, now)


def test_an_escalation_today_on_an_item_of_a_closed_day_counts(workflow):
    now = timezone.now()
    since = _window(now, 30)
    item = backdate(WorkItemFactory(workflow=workflow), created_at=now - timedelta(days=6))
    first = metrics.dashboard_metrics(workflow, since=since, now=now).metrics
    assert (first.received, first.escalated_items) == (1, 0)
    EscalationFactory(work_item=item, workflow=workflow)
    EscalationFactory(work_item=item, workflow=workflow)
    m = metrics.dashboard_metrics(workflow, since=since, now=now).metrics
    assert (m.received, m.escalated_items, m.escalations) == (1, 1, 2)
    _assert_rollup_is_live(workflow, since, now)
    # A window that starts after the item was received does not count it.
    recent = metrics.dashboard_metrics(workflow, since=_window(now, 3), now=now).metrics
    assert (recent.received, recent.escalated_items, recent.escalations) == (0, 0, 2)
    _assert_rollup_is_live(workflow, _window(now, 3), now)


def test_backfilled_rows_show_once_their_days_are_invalidated(workflow):
    now = timezone.now()
    since = _window(now, 30)
    make_evidence(workflow, accepted=2)
    metrics.metric_days_roll(workflow_ids=[workflow.pk], days=30, now=now)
    old = now - timedelta(days=4)
    backfilled = make_evidence(workflow, rejected=1, reject_reason=RejectReason.UNSAFE)[0]
    backdate(backfilled, created_at=old)
    stale = metrics.dashboard_metrics(workflow, since=since, now=now).metrics
    assert stale.agreement.rejected == 0  # the closed day was rolled before the backfill
    assert metrics.metric_days_invalidate(workflow_ids=[workflow.pk], since=old.date()) >= 1
    fresh = metrics.dashboard_metrics(workflow, since=since, now=now).metrics
    assert (fresh.agreement.rejected, fresh.critical_rejections) == (1, 1)
    _assert_rollup_is_live(workflow, since, now)


def test_rolling_up_again_changes_nothing(workflow, other_workflow):
    now = timezone.now()
    _random_evidence(workflow, now, items=30, seed=7)
    closed = (metrics.last_closed_day(now) - (now - timedelta(days=40)).date()).days + 1
    assert metrics.metric_days_roll(days=40, now=now) == 2 * closed
    stored = sorted(
        MetricDay.objects.values_list("workflow", "day", "tool", "decisions", "model_usd")
    )
    assert metrics.metric_days_roll(days=40, now=now) == 0
    assert metrics.metric_days_roll(days=40, now=now, refresh=True) == 2 * closed
    again = sorted(
        MetricDay.objects.values_list("workflow", "day", "tool", "decisions", "model_usd")
    )
    assert again == stored
    assert metric_rollup_task() > 0  # the periodic task rolls a longer history
    assert metric_rollup_task() == 0
    _assert_rollup_is_live(workflow, _window(now, 30), now)


def test_the_rollup_is_scheduled_on_beat():
    from console.ops.beat import BEAT_SCHEDULE

    entry = BEAT_SCHEDULE["metric-rollup"]
    assert entry["task"] == "evidence.metric_rollup"
    assert entry["options"]["expires"] < entry["schedule"].total_seconds()


def _spread(workflow: Workflow, now: datetime, decisions: int) -> None:
    """Decisions over the last twenty days, a tenth of them today."""
    per_day = max(1, decisions // 10)
    made = 0
    offset = 0
    while made < decisions:
        n = min(per_day, decisions - made)
        for decision in make_evidence(workflow, accepted=n - n // 3, edited=n // 3):
            when = now - timedelta(days=offset * 2, minutes=1)
            for obj in (decision, decision.proposal, decision.proposal.run):
                backdate(obj, created_at=when)
            WorkItem.objects.filter(pk=decision.proposal.work_item_id).update(
                created_at=when, resolved_at=when
            )
            StepFactory(run=decision.proposal.run, index=1, name="create_refund")
        made += n
        offset += 1


def _dashboard_queries(client, slug: str) -> int:
    url = reverse("evidence-dashboard", args=[slug]) + "?days=30"
    client.get(url)  # stores the rollups of days not rolled yet
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries.captured_queries)


def test_dashboard_queries_do_not_grow_with_decisions(client_for, manager, workflow):
    client = client_for(manager)
    now = timezone.now()
    _spread(workflow, now, 10)
    small = _dashboard_queries(client, "refunds")
    _spread(workflow, now, 190)
    assert Decision.objects.count() == 200
    assert Step.objects.count() == 200
    assert _dashboard_queries(client, "refunds") == small


def _ops_queries(client) -> int:
    url = reverse("ops-overview") + "?days=30"
    client.get(url)  # stores the rollups of days not rolled yet
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries.captured_queries)


def test_ops_overview_queries_do_not_grow_with_decisions(client_for, ops, workflow):
    client = client_for(ops)
    now = timezone.now()
    _spread(workflow, now, 10)
    small = _ops_queries(client)
    _spread(workflow, now, 190)
    assert _ops_queries(client) == small


@pytest.mark.django_db(transaction=True)
def test_the_live_slice_outside_a_transaction_gives_the_same_numbers():
    # Outside any transaction the live slice runs in its own, with PostgreSQL's planner
    # told to plan short index ranges (no hash joins, workers or JIT) for it alone.
    workflow = Workflow.objects.create(slug="autocommit", name="Autocommit")
    now = timezone.now()
    _random_evidence(workflow, now, items=20, seed=11)
    assert not connection.in_atomic_block
    _assert_rollup_is_live(workflow, _window(now, 30), now)
    if connection.vendor == "postgresql":  # the settings did not outlive that transaction
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('enable_hashjoin')")
            assert cursor.fetchone()[0] == "on"
