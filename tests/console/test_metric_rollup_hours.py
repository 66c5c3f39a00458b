"""The open day's closed hours: rolled up once (in the cache), read back with a live
slice of at most the last hour or two, and equal to the raw computation."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Run, WorkItem
from evidence import metrics
from evidence.metrics import open_day, rollups
from evidence.models import MetricDay
from governance.models import Workflow
from reviews.models import Decision, RejectReason
from tests.console.evidence import make_evidence
from tests.console.factories import StepFactory, backdate
from tests.console.test_metric_rollups import _assert_rollup_is_live, _random_evidence, _window
from tests.factories import EscalationFactory


def _yesterday_at(hours: int, minutes: int = 0, **extra: float) -> datetime:
    """A time of yesterday: a whole open day behind, whatever the hour the tests run."""
    midnight = metrics.start_of_today(timezone.now()) - timedelta(days=1)
    return midnight + timedelta(hours=hours, minutes=minutes, **extra)


def _event(workflow: Workflow, at: datetime, verdict: str = "accept", **kwargs) -> Decision:
    """One work item received, run, tool call, decision and outcome, all at ``at``."""
    counts = {"accepted": 0, "edited": 0, "rejected": 0}
    counts[{"accept": "accepted", "edit": "edited", "reject": "rejected"}[verdict]] = 1
    decision = make_evidence(workflow, **counts, **kwargs)[0]
    proposal = decision.proposal
    for obj in (decision, proposal, proposal.run):
        backdate(obj, created_at=at)
    WorkItem.objects.filter(pk=proposal.work_item_id).update(created_at=at, resolved_at=at)
    step = StepFactory(run=proposal.run, index=1, name=proposal.tool, error="HTTP 502")
    backdate(step, created_at=at)
    return decision


class ComputeSpy:
    """Records the ranges ``metric_days_compute`` is asked for."""

    def __init__(self, monkeypatch) -> None:
        self.ranges: list[tuple[datetime, datetime | None]] = []
        real = metrics.metric_days_compute

        def spy(ids, *, since, until=None, **kwargs):
            self.ranges.append((since, until))
            return real(ids, since=since, until=until, **kwargs)

        monkeypatch.setattr(rollups, "metric_days_compute", spy)


def test_closed_hours_and_the_live_slice_equal_the_raw_metrics_across_the_hour(workflow):
    now = _yesterday_at(14, 20)
    closed_until = metrics.last_closed_hour(now)
    assert closed_until == _yesterday_at(13)
    _event(workflow, now - timedelta(days=3))  # a closed day
    _event(workflow, _yesterday_at(0, 10))
    _event(workflow, closed_until - timedelta(microseconds=1), "edit")  # last rolled instant
    _event(workflow, closed_until, "reject", reject_reason=RejectReason.UNSAFE)  # first live
    _event(workflow, _yesterday_at(13, 40), model_cost=Decimal("0.25"))
    since = _window(now, 7)

    _assert_rollup_is_live(workflow, since, now)
    m = metrics.dashboard_metrics(workflow, since=since, now=now).metrics
    assert (m.agreement.accepted, m.agreement.edited, m.agreement.rejected) == (3, 1, 1)
    assert m.critical_rejections == 1
    # The prefix kept for [midnight, 13:00) is the raw computation of that range.
    prefix = metrics.open_hours_read([workflow], start=_yesterday_at(0), until=closed_until)
    raw = metrics.metric_days_compute([workflow.pk], since=_yesterday_at(0), until=closed_until)
    assert _columns(prefix) == _columns(raw.values())
    assert sum(r.decisions for r in prefix) == 2


def _columns(rows) -> list[tuple]:
    return sorted(
        (r.workflow_id, r.day, r.tool, *(getattr(r, c) for c in open_day.OPEN_COLUMNS))
        for r in rows
    )


def test_an_hour_is_read_from_raw_rows_once_and_the_prefix_moves_on_by_one_hour(
    workflow, monkeypatch
):
    for hour in (1, 9, 13, 14):
        _event(workflow, _yesterday_at(hour, 30))
    spy = ComputeSpy(monkeypatch)
    first = _yesterday_at(14, 20)
    since = _window(first, 7)
    metrics.dashboard_metrics(workflow, since=since, now=first)
    assert (_yesterday_at(0), _yesterday_at(13)) in spy.ranges  # the prefix, computed once
    assert (_yesterday_at(13), None) in spy.ranges  # the live slice: from 13:00

    spy.ranges.clear()
    metrics.dashboard_metrics(workflow, since=since, now=first)
    assert spy.ranges == [(_yesterday_at(13), None)]  # the prefix came from the cache

    spy.ranges.clear()
    later = _yesterday_at(15, 5)
    board = metrics.dashboard_metrics(workflow, since=since, now=later)
    # One more hour read from raw rows, added to the cached prefix; then the live slice.
    assert spy.ranges == [(_yesterday_at(13), _yesterday_at(14)), (_yesterday_at(14), None)]
    assert board.metrics.decisions == 4
    _assert_rollup_is_live(workflow, since, later)


def test_an_item_escalated_after_its_hour_was_rolled_counts_as_escalated(workflow):
    item = WorkItem.objects.get(pk=_event(workflow, _yesterday_at(10, 10)).proposal.work_item_id)
    now = _yesterday_at(14, 20)
    since = _window(now, 7)
    m = metrics.dashboard_metrics(workflow, since=since, now=now).metrics
    assert (m.received, m.escalated_items) == (1, 0)

    escalation = EscalationFactory(work_item=item, workflow=workflow)
    backdate(escalation, created_at=_yesterday_at(13, 30))  # same day, in the live slice
    m = metrics.dashboard_metrics(workflow, since=since, now=now).metrics
    assert (m.received, m.escalated_items, m.escalations) == (1, 1, 1)
    _assert_rollup_is_live(workflow, since, now)

    later = _yesterday_at(16, 0)  # the escalation's hour is rolled up now
    m = metrics.dashboard_metrics(workflow, since=since, now=later).metrics
    assert (m.received, m.escalated_items, m.escalations) == (1, 1, 1)
    _assert_rollup_is_live(workflow, since, later)


def test_a_decision_within_the_grace_counts_and_a_late_one_shows_once_invalidated(workflow):
    now = _yesterday_at(14, 20)
    since = _window(now, 7)
    _event(workflow, _yesterday_at(9))
    assert metrics.dashboard_metrics(workflow, since=since, now=now).metrics.decisions == 1

    # 13:50 is in an hour not closed yet (13:00 + ROLLUP_GRACE is after now): it counts.
    _event(workflow, _yesterday_at(13, 50))
    assert metrics.dashboard_metrics(workflow, since=since, now=now).metrics.decisions == 2
    _assert_rollup_is_live(workflow, since, now)

    # A row written into an hour already rolled up (a backfill) is not seen until its
    # day is invalidated: the guarantee closed days give.
    _event(workflow, _yesterday_at(11), "reject")
    stale = metrics.dashboard_metrics(workflow, since=since, now=now).metrics
    assert (stale.decisions, stale.agreement.rejected) == (2, 0)
    metrics.metric_days_invalidate(
        workflow_ids=[workflow.pk], since=timezone.localdate(now), now=now
    )
    fresh = metrics.dashboard_metrics(workflow, since=since, now=now).metrics
    assert (fresh.decisions, fresh.agreement.rejected) == (3, 1)
    _assert_rollup_is_live(workflow, since, now)


def test_a_run_still_writing_within_the_grace_counts_its_final_cost(workflow):
    decision = _event(workflow, _yesterday_at(13, 55), model_cost=Decimal("0.10"))
    now = _yesterday_at(14, 30)
    since = _window(now, 7)
    assert metrics.dashboard_metrics(workflow, since=since, now=now).metrics.cost.model_usd == (
        Decimal("0.10")
    )
    Run.objects.filter(pk=decision.proposal.run_id).update(cost_usd=Decimal("0.40"))
    m = metrics.dashboard_metrics(workflow, since=since, now=_yesterday_at(14, 55)).metrics
    assert m.cost.model_usd == Decimal("0.40")
    _assert_rollup_is_live(workflow, since, _yesterday_at(14, 55))


def test_just_after_midnight_yesterday_is_read_by_the_hour_and_today_live(workflow):
    # Within ROLLUP_GRACE after midnight the day before is still open: its hours up to
    # 23:00 are rolled, 23:00 .. now is live and spans midnight.
    now = _yesterday_at(0, 30)
    day_before = now - timedelta(hours=1)  # 23:30 the day before
    assert metrics.last_closed_day(now) == timezone.localdate(day_before) - timedelta(days=1)
    assert metrics.last_closed_hour(now) == _yesterday_at(-1)
    for at in (_yesterday_at(-2, 30), day_before, _yesterday_at(0, 10)):
        _event(workflow, at)
    _assert_rollup_is_live(workflow, _window(now, 3), now)
    _assert_rollup_is_live(workflow, _window(now, 1), now)


@pytest.mark.parametrize("seed", [4, 5])
def test_random_evidence_read_by_the_hour_equals_the_raw_metrics(workflow, other_workflow, seed):
    now = timezone.now()
    _random_evidence(workflow, now, items=40, seed=seed)
    _random_evidence(other_workflow, now, items=10, seed=seed + 50)
    for hours in range(0, 24, 5):  # the same history read at several hours of the day
        at = _yesterday_at(hours, 45)
        for days in (1, 7):
            _assert_rollup_is_live(workflow, _window(at, days), at)
        rows, daily = metrics.ops_overview_rolled(
            Workflow.objects.order_by("slug"), since=_window(at, 7), now=at
        )
        live = metrics.ops_overview(Workflow.objects.order_by("slug"), since=_window(at, 7), now=at)
        assert [(r.today_usd, r.week_usd, r.cost, r.budget_trips) for r in rows] == [
            (r.today_usd, r.week_usd, r.cost, r.budget_trips) for r in live
        ]
        scope = metrics.Scope(workflow_ids=(workflow.pk, other_workflow.pk), since=_window(at, 7))
        assert [(d.day, d.model_usd, d.tool_usd) for d in daily] == [
            (d.day, d.model_usd, d.tool_usd) for d in metrics.daily_rollup(scope, now=at)
        ]


class DeadCache:
    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("Redis is down")

        return fail


def test_the_open_day_is_computed_live_when_the_cache_is_down(workflow, monkeypatch):
    for hour in (2, 8, 13):
        _event(workflow, _yesterday_at(hour, 30))
    monkeypatch.setattr(open_day, "cache", DeadCache())
    now = _yesterday_at(14, 20)
    m = metrics.dashboard_metrics(workflow, since=_window(now, 7), now=now).metrics
    assert m.decisions == 3
    _assert_rollup_is_live(workflow, _window(now, 7), now)
    with pytest.raises(ConnectionError):  # nothing deleted: safe to call again
        metrics.metric_days_invalidate(
            workflow_ids=[workflow.pk], since=timezone.localdate(now), now=now
        )


def test_the_periodic_roll_leaves_requests_only_the_live_slice(workflow, monkeypatch):
    for hour in (3, 11):
        _event(workflow, _yesterday_at(hour, 30))
    now = _yesterday_at(14, 20)
    metrics.metric_days_roll(days=10, now=now)
    assert metrics.open_hours_roll(now=now) == Workflow.objects.count()
    spy = ComputeSpy(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        m = metrics.dashboard_metrics(workflow, since=_window(now, 7), now=now).metrics
    assert m.decisions == 2
    assert spy.ranges == [(_yesterday_at(13), None)]
    assert len(queries) <= 11  # the stored days, the planner settings, the live slice
    assert MetricDay.objects.filter(workflow=workflow, day=timezone.localdate(now)).count() == 0
