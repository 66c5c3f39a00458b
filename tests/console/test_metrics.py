"""Every metric against a hand-computed fixture."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Run
from evidence import metrics
from evidence.metrics import Scope, wilson_interval
from reviews.models import Decision, RejectReason
from tests.console.factories import DecisionFactory, backdate, build_evidence
from tests.factories import RunFactory, WorkflowFactory

RATE = Decimal("45.00")


@pytest.fixture(autouse=True)
def _hourly_rate(settings):
    settings.TENURE_REVIEWER_HOURLY_RATE = RATE


def test_wilson_interval_of_eight_in_ten():
    low, high = wilson_interval(8, 10)
    # p=0.8, z=1.96: centre (0.8 + 0.19208) / 1.38416, half 1.96*sqrt(0.025604) / 1.38416
    assert low == pytest.approx(0.490157, abs=1e-6)
    assert high == pytest.approx(0.943319, abs=1e-6)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.722460, abs=1e-6)
    assert high == 1.0
    low, high = wilson_interval(0, 5)
    assert low == 0.0
    assert high == pytest.approx(0.434491, abs=1e-6)
    with pytest.raises(ValueError, match="between 0 and n"):
        wilson_interval(3, 2)


def test_cost_per_outcome_is_none_without_outcomes():
    assert (
        metrics.cost_per_outcome(
            model_cost=Decimal("1"), tool_cost=Decimal("0"), reviewer_seconds=0, outcomes=0
        )
        is None
    )


@dataclass
class Evidence:
    workflow: object
    scope: Scope
    now: object


@pytest.fixture
def evidence(db) -> Evidence:
    workflow = WorkflowFactory(
        slug="refunds",
        cost_target_usd=Decimal("1.00"),
        tool_error_budget=Decimal("0.050"),
    )
    now = timezone.now()
    build_evidence(workflow, now)
    return Evidence(workflow, Scope.for_workflow(workflow, since=now - timedelta(days=30)), now)


@pytest.fixture
def noise(evidence):
    """Rows that must not count: another workflow, and a decision before the window."""
    other = WorkflowFactory(slug="access")
    DecisionFactory(proposal__run__work_item__workflow=other, verdict=Decision.Verdict.REJECT,
                    reason=RejectReason.UNSAFE)  # fmt: skip
    old = DecisionFactory(
        proposal__run__work_item__workflow=evidence.workflow,
        verdict=Decision.Verdict.REJECT,
        reason=RejectReason.UNSAFE,
    )
    before = evidence.now - timedelta(days=40)
    backdate(old, created_at=before)
    backdate(old.proposal.run, created_at=before)
    backdate(old.proposal.work_item, created_at=before)
    return old


def test_agreement_counts_edits_as_disagreement(evidence, noise):
    agreement = metrics.agreement_for(evidence.scope)
    assert (agreement.accepted, agreement.edited, agreement.rejected) == (8, 1, 1)
    assert agreement.rate == pytest.approx(0.8)
    assert agreement.low == pytest.approx(0.490157, abs=1e-6)
    assert agreement.high == pytest.approx(0.943319, abs=1e-6)


def test_empty_window_has_no_rates(db):
    workflow = WorkflowFactory(slug="quiet")
    scope = Scope.for_workflow(workflow, since=timezone.now() - timedelta(days=7))
    result = metrics.workflow_metrics(scope, workflow)
    assert result.agreement.n == 0
    assert result.agreement.rate is None
    assert (result.agreement.low, result.agreement.high) == (0.0, 1.0)
    assert result.success_rate is None
    assert result.cost.per_outcome is None
    assert result.escalation_rate is None
    assert result.time_to_safe_fail is None
    assert result.tool_errors == []
    assert result.field_agreement == []


def test_workflow_metrics_match_hand_computed_values(evidence, noise):
    m = metrics.workflow_metrics(evidence.scope, evidence.workflow)
    assert (m.resolved, m.succeeded) == (7, 6)
    assert m.success_rate == pytest.approx(6 / 7)
    assert m.agreement.rate == pytest.approx(0.8)
    assert m.reject_reasons == {RejectReason.WRONG_AMOUNT: 1}
    assert m.critical_rejections == 0
    # 10 runs at $0.10 model + $0.05 tools, 600 reviewer seconds at $45/h = $7.50.
    assert m.cost.model_usd == Decimal("1.00")
    assert m.cost.tool_usd == Decimal("0.50")
    assert m.cost.reviewer_seconds == 600
    assert m.cost.reviewer_usd == Decimal("7.50")
    assert m.cost.outcomes == 6
    assert m.cost.per_outcome == Decimal("1.50")
    assert m.cost.within_target is False
    # 10 items with decisions + 2 escalated items.
    assert (m.received, m.escalated_items, m.escalations) == (12, 2, 2)
    assert m.escalation_rate == pytest.approx(2 / 12)
    assert m.runs == 11
    assert m.mean_tool_calls == pytest.approx(28 / 11)
    assert m.retried_runs == 1
    assert m.retry_rate == pytest.approx(1 / 11)
    assert m.time_to_safe_fail == timedelta(seconds=90)
    assert m.budget_trips == {Run.StopReason.BUDGET_TOOL_CALLS: 1}
    assert m.decisions == 10
    assert m.reviewer_seconds_per_decision == pytest.approx(60)
    assert m.resolutions == 2
    assert m.minutes_saved_per_escalation == pytest.approx(15)
    assert m.mean_packet_rating == pytest.approx(4.5)
    [refund_errors] = m.tool_errors
    assert (refund_errors.tool, refund_errors.calls, refund_errors.errors) == (
        "create_refund",
        20,
        1,
    )
    assert refund_errors.rate == pytest.approx(0.05)
    assert refund_errors.budget_remaining == pytest.approx(0.0)


def test_field_level_agreement_names_the_edited_field(evidence):
    fields = {f.field: f for f in metrics.field_agreement_for(evidence.scope)}
    assert set(fields) == {"amount", "order_number", "reason"}
    assert (fields["amount"].edited_decisions, fields["amount"].changed) == (1, 1)
    assert fields["amount"].rate == 0.0
    assert fields["order_number"].rate == 1.0


def test_critical_rejections_and_reasons(evidence):
    DecisionFactory(
        proposal__run__work_item__workflow=evidence.workflow,
        verdict=Decision.Verdict.REJECT,
        reason=RejectReason.UNSAFE,
    )
    m = metrics.workflow_metrics(evidence.scope, evidence.workflow)
    assert m.critical_rejections == 1
    assert m.reject_reasons == {RejectReason.UNSAFE: 1, RejectReason.WRONG_AMOUNT: 1}


def test_per_tool_scope_only_counts_that_tool(evidence):
    DecisionFactory(
        proposal__run__work_item__workflow=evidence.workflow,
        proposal__tool="send_message",
        verdict=Decision.Verdict.REJECT,
        reason=RejectReason.UNSAFE,
    )
    refunds = Scope.for_workflow(
        evidence.workflow, since=evidence.scope.since, tool="create_refund"
    )
    assert metrics.agreement_for(refunds).n == 10
    by_tool = metrics.agreement_by_tool(evidence.scope)
    assert by_tool["create_refund"].rate == pytest.approx(0.8)
    assert by_tool["send_message"].rate == 0.0


def test_daily_rollup_puts_each_row_on_its_day(evidence):
    yesterday = evidence.now - timedelta(days=1)
    old = DecisionFactory(
        proposal__run__work_item__workflow=evidence.workflow, verdict=Decision.Verdict.ACCEPT
    )
    backdate(old, created_at=yesterday)
    days = metrics.daily_rollup(evidence.scope, now=evidence.now)
    assert len(days) == 31
    today = days[-1]
    assert today.day == timezone.localdate(evidence.now)
    assert (today.accepted, today.edited, today.rejected) == (8, 1, 1)
    assert today.agreement.interval == pytest.approx(wilson_interval(8, 10))
    assert today.outcomes == 6
    assert (today.tool_calls, today.tool_errors) == (20, 1)
    assert days[-2].accepted == 1
    assert days[-2].agreement.rate == 1.0
    assert sum(d.escalations for d in days) == 2
    assert sum(d.received for d in days) == 13


def test_metric_query_count_does_not_grow_with_rows(evidence, django_assert_max_num_queries):
    with CaptureQueriesContext(connection) as before:
        metrics.workflow_metrics(evidence.scope, evidence.workflow)
        metrics.daily_rollup(evidence.scope)
        metrics.agreement_by_tool(evidence.scope)
    build_evidence(evidence.workflow, evidence.now, decisions_per_verdict=(30, 5, 5))
    with django_assert_max_num_queries(len(before.captured_queries)):
        m = metrics.workflow_metrics(evidence.scope, evidence.workflow)
        metrics.daily_rollup(evidence.scope)
        metrics.agreement_by_tool(evidence.scope)
    assert m.agreement.n == 50


def test_ops_overview_spend_and_cost_per_workflow(evidence, django_assert_max_num_queries):
    other = WorkflowFactory(slug="access", daily_budget_usd=Decimal("10"))
    RunFactory(work_item__workflow=other, cost_usd=Decimal("2.50"), tool_cost_usd=Decimal("0.50"))
    workflows = type(other).objects.filter(slug__in=["refunds", "access"]).order_by("slug")
    with django_assert_max_num_queries(6):
        rows = metrics.ops_overview(workflows, since=evidence.scope.since)
    by_slug = {row.workflow.slug: row for row in rows}
    # 10 runs at $0.15 and the tripped run at $0 (all created today).
    assert by_slug["refunds"].today_usd == Decimal("1.50")
    assert by_slug["refunds"].cost.per_outcome == Decimal("1.50")
    assert by_slug["refunds"].budget_trips == 1
    assert by_slug["access"].today_usd == Decimal("3.00")
    assert by_slug["access"].today_share == pytest.approx(0.3)
    assert by_slug["access"].cost.per_outcome is None


def test_drilldown_returns_exactly_the_rows_counted(evidence, noise):
    scope = evidence.scope
    m = metrics.workflow_metrics(scope, evidence.workflow)
    rows = metrics.drilldown_rows
    assert rows(scope, "decisions", {"verdict": "accept"}).count() == m.agreement.accepted
    assert rows(scope, "decisions", {"verdict": "edit"}).count() == m.agreement.edited
    assert rows(scope, "decisions", {}).count() == m.decisions
    assert rows(scope, "outcomes", {"succeeded": "1"}).count() == m.cost.outcomes
    assert rows(scope, "outcomes", {}).count() == m.resolved
    assert rows(scope, "received", {"escalated": "1"}).count() == m.escalated_items
    assert rows(scope, "received", {}).count() == m.received
    assert rows(scope, "runs", {"retried": "1"}).count() == m.retried_runs
    assert rows(scope, "runs", {"budget": "1"}).count() == m.budget_trips_total
    assert rows(scope, "tool_steps", {"errors": "1"}).count() == 1
    assert rows(scope, "escalations", {"with_run": "1"}).count() == 1
    assert rows(scope, "resolutions", {}).count() == m.resolutions
    assert rows(scope, "decisions", {"field": "amount", "changed": "1"}).count() == 1
    assert rows(scope, "decisions", {"reason": "wrong_amount"}).count() == 1
    day = timezone.localdate(evidence.now)
    assert rows(scope, "decisions", {}, day=day).count() == 10


@pytest.mark.parametrize(
    ("metric", "filters"),
    [("nope", {}), ("decisions", {"verdict": "maybe"}), ("runs", {"retried": "perhaps"})],
)
def test_drilldown_refuses_bad_input(evidence, metric, filters):
    with pytest.raises(ValueError, match="not"):
        metrics.drilldown_rows(evidence.scope, metric, filters)
