"""Every metric of a scope computed from raw rows, through the definitions: one
workflow (``workflow_metrics``), per tool, per day, and the ops overview. A fixed
number of queries whatever the data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Avg, Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from agents.models import Run
from evidence.metrics.definitions import (
    BUDGET_TRIP,
    CRITICAL,
    RETRIED,
    ZERO,
    Agreement,
    Cost,
    FieldAgreement,
    ToolErrors,
    agreement_counts,
    backlog_for,
    budget_trips_for,
    field_agreement_for,
    outcome_counts,
    received_counts,
    reject_reasons_for,
    reviewer_seconds_sum,
    run_cost_sums,
    time_to_safe_fail_for,
    tool_call_counts,
    tool_errors_for,
)
from evidence.metrics.rows import (
    decisions_rows,
    escalations_rows,
    outcomes_rows,
    received_rows,
    resolutions_rows,
    runs_rows,
    tool_steps_rows,
)
from evidence.metrics.scope import Scope, days_between, start_of_today, start_of_week
from evidence.metrics.stats import as_float, pct, ratio
from governance.models import Workflow


@dataclass(frozen=True)
class WorkflowMetrics:
    scope: Scope
    resolved: int
    succeeded: int
    agreement: Agreement
    field_agreement: list[FieldAgreement]
    reject_reasons: dict[str, int]
    critical_rejections: int
    cost: Cost
    received: int
    escalated_items: int
    escalations: int
    runs: int
    mean_tool_calls: float | None
    retried_runs: int
    time_to_safe_fail: timedelta | None
    tool_errors: list[ToolErrors]
    budget_trips: dict[str, int]
    decisions: int
    reviewer_seconds_per_decision: float | None
    resolutions: int
    minutes_saved_per_escalation: float | None
    mean_packet_rating: float | None

    @property
    def success_rate(self) -> float | None:
        return ratio(self.succeeded, self.resolved)

    @property
    def escalation_rate(self) -> float | None:
        return ratio(self.escalated_items, self.received)

    @property
    def retry_rate(self) -> float | None:
        return ratio(self.retried_runs, self.runs)

    @property
    def success_pct(self) -> float | None:
        return pct(self.success_rate)

    @property
    def escalation_pct(self) -> float | None:
        return pct(self.escalation_rate)

    @property
    def retry_pct(self) -> float | None:
        return pct(self.retry_rate)

    @property
    def time_to_safe_fail_seconds(self) -> float | None:
        return None if self.time_to_safe_fail is None else self.time_to_safe_fail.total_seconds()

    @property
    def budget_trips_total(self) -> int:
        return sum(self.budget_trips.values())

    @property
    def tool_errors_total(self) -> ToolErrors:
        budget = self.tool_errors[0].budget if self.tool_errors else None
        return ToolErrors(
            tool="",
            calls=sum(t.calls for t in self.tool_errors),
            errors=sum(t.errors for t in self.tool_errors),
            budget=budget,
        )


def workflow_metrics(scope: Scope, workflow: Workflow | None = None) -> WorkflowMetrics:
    """Every metric for one scope, in a fixed number of queries."""
    target = workflow.cost_target_usd if workflow is not None else None
    budget = float(workflow.tool_error_budget) if workflow is not None else None

    outcomes = outcomes_rows(scope).aggregate(**outcome_counts())
    received = received_rows(scope).aggregate(**received_counts())
    runs = runs_rows(scope).aggregate(
        n=Count("pk"),
        mean_tool_calls=Avg("tool_calls"),
        retried=Count("pk", filter=RETRIED),
        **run_cost_sums(),
    )
    decisions = decisions_rows(scope).aggregate(
        **agreement_counts(),
        critical=Count("pk", filter=CRITICAL),
        n=Count("pk"),
        seconds=reviewer_seconds_sum(),
        mean_seconds=Avg("seconds_spent"),
    )
    resolutions = resolutions_rows(scope).aggregate(
        n=Count("pk"), minutes=Avg("minutes_saved"), rating=Avg("packet_rating")
    )
    return WorkflowMetrics(
        scope=scope,
        resolved=outcomes["resolved"],
        succeeded=outcomes["succeeded"],
        agreement=Agreement.from_counts(decisions),
        field_agreement=field_agreement_for(scope),
        reject_reasons=reject_reasons_for(scope),
        critical_rejections=decisions["critical"],
        cost=Cost(
            model_usd=runs["model_usd"],
            tool_usd=runs["tool_usd"],
            reviewer_seconds=decisions["seconds"],
            outcomes=outcomes["succeeded"],
            target_usd=target,
        ),
        received=received["received"],
        escalated_items=received["escalated_items"],
        escalations=escalations_rows(scope).count(),
        runs=runs["n"],
        mean_tool_calls=as_float(runs["mean_tool_calls"]),
        retried_runs=runs["retried"],
        time_to_safe_fail=time_to_safe_fail_for(scope),
        tool_errors=tool_errors_for(scope, budget),
        budget_trips=budget_trips_for(scope),
        decisions=decisions["n"],
        reviewer_seconds_per_decision=as_float(decisions["mean_seconds"]),
        resolutions=resolutions["n"],
        minutes_saved_per_escalation=as_float(resolutions["minutes"]),
        mean_packet_rating=as_float(resolutions["rating"]),
    )


def agreement_by_tool(scope: Scope) -> dict[str, Agreement]:
    """Agreement per tool in one grouped query."""
    rows = (
        decisions_rows(scope)
        .values("proposal__tool")
        .annotate(**agreement_counts())
        .order_by("proposal__tool")
    )
    return {row["proposal__tool"]: Agreement.from_counts(row) for row in rows}


@dataclass
class Day:
    """One day's additive counts, and the day's metrics from them."""

    day: date
    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    model_usd: Decimal = ZERO
    tool_usd: Decimal = ZERO
    reviewer_seconds: int = 0
    outcomes: int = 0
    received: int = 0
    escalations: int = 0
    tool_calls: int = 0
    tool_errors: int = 0

    @property
    def agreement(self) -> Agreement:
        return Agreement(accepted=self.accepted, edited=self.edited, rejected=self.rejected)

    @property
    def spend_usd(self) -> Decimal:
        return self.model_usd + self.tool_usd

    @property
    def cost(self) -> Cost:
        return Cost(self.model_usd, self.tool_usd, self.reviewer_seconds, self.outcomes)

    @property
    def cost_per_outcome(self) -> Decimal | None:
        return self.cost.per_outcome


def daily_rollup(scope: Scope, *, now: datetime | None = None) -> list[Day]:
    """One row per day of the window: six grouped queries whatever the data."""
    until = scope.until or now or timezone.now()
    days = {d: Day(day=d) for d in days_between(scope.since, until)}

    def merge(rows: Iterable[dict], **fields: str) -> None:
        for row in rows:
            target = days.get(row["day"])
            if target is None:
                continue
            for attr, key in fields.items():
                setattr(target, attr, row[key])

    def per_day(rows: QuerySet, time_field: str = "created_at") -> QuerySet:
        return rows.annotate(day=TruncDate(time_field)).values("day")

    merge(
        per_day(decisions_rows(scope)).annotate(**agreement_counts(), s=reviewer_seconds_sum()),
        accepted="accepted",
        edited="edited",
        rejected="rejected",
        reviewer_seconds="s",
    )
    merge(
        per_day(runs_rows(scope)).annotate(**run_cost_sums()),
        model_usd="model_usd",
        tool_usd="tool_usd",
    )
    merge(
        per_day(outcomes_rows(scope), "resolved_at").annotate(**outcome_counts()),
        outcomes="succeeded",
    )
    merge(per_day(received_rows(scope)).annotate(n=Count("pk")), received="n")
    merge(per_day(escalations_rows(scope)).annotate(n=Count("pk")), escalations="n")
    merge(
        per_day(tool_steps_rows(scope)).annotate(**tool_call_counts()),
        tool_calls="calls",
        tool_errors="errors",
    )
    return list(days.values())


@dataclass(frozen=True)
class WorkflowSpend:
    workflow: Workflow
    today_usd: Decimal
    week_usd: Decimal
    cost: Cost
    budget_trips: int
    pending: int
    escalations: int
    oldest_pending_at: datetime | None

    @property
    def daily_budget_usd(self) -> Decimal:
        return self.workflow.daily_budget_usd

    @property
    def week_budget_usd(self) -> Decimal:
        return self.workflow.daily_budget_usd * 7

    @property
    def today_share(self) -> float | None:
        return ratio(self.today_usd, self.daily_budget_usd)

    @property
    def week_share(self) -> float | None:
        return ratio(self.week_usd, self.week_budget_usd)

    @property
    def today_pct(self) -> float | None:
        return pct(self.today_share)

    @property
    def week_pct(self) -> float | None:
        return pct(self.week_share)

    @property
    def oldest_age(self) -> timedelta | None:
        if self.oldest_pending_at is None:
            return None
        return timezone.now() - self.oldest_pending_at


def ops_overview(
    workflows: QuerySet[Workflow], *, since: datetime, now: datetime | None = None
) -> list[WorkflowSpend]:
    """Spend, cost per outcome, queue backlog and budget trips for many workflows:
    a fixed number of grouped queries whatever the number of workflows or rows."""
    now = now or timezone.now()
    today, week = start_of_today(now), start_of_week(now)
    workflows = list(workflows)
    ids = tuple(w.pk for w in workflows)
    scope = Scope(workflow_ids=ids, since=since)
    earliest = min(since, week)
    in_window = Q(created_at__gte=since)
    spend = {
        row["work_item__workflow"]: row
        for row in Run.objects.filter(work_item__workflow__in=ids, created_at__gte=earliest)
        .values("work_item__workflow")
        .annotate(
            today=Coalesce(
                Sum(F("cost_usd") + F("tool_cost_usd"), filter=Q(created_at__gte=today)), ZERO
            ),
            week=Coalesce(
                Sum(F("cost_usd") + F("tool_cost_usd"), filter=Q(created_at__gte=week)), ZERO
            ),
            **run_cost_sums(within=in_window),
            trips=Count("pk", filter=in_window & BUDGET_TRIP),
        )
        .order_by()
    }
    seconds = dict(
        decisions_rows(scope)
        .values("proposal__workflow")
        .annotate(s=reviewer_seconds_sum())
        .order_by()
        .values_list("proposal__workflow", "s")
    )
    outcomes = dict(
        outcomes_rows(scope)
        .values("workflow")
        .annotate(**outcome_counts())
        .order_by()
        .values_list("workflow", "succeeded")
    )
    backlog = backlog_for(ids)
    result = []
    for workflow in workflows:
        run = spend.get(workflow.pk, {})
        result.append(
            WorkflowSpend(
                workflow=workflow,
                today_usd=run.get("today", ZERO),
                week_usd=run.get("week", ZERO),
                cost=Cost(
                    model_usd=run.get("model_usd", ZERO),
                    tool_usd=run.get("tool_usd", ZERO),
                    reviewer_seconds=seconds.get(workflow.pk, 0),
                    outcomes=outcomes.get(workflow.pk, 0),
                    target_usd=workflow.cost_target_usd,
                ),
                budget_trips=run.get("trips", 0),
                pending=backlog[workflow.pk].pending,
                escalations=backlog[workflow.pk].open_escalations,
                oldest_pending_at=backlog[workflow.pk].oldest_pending_at,
            )
        )
    return result
