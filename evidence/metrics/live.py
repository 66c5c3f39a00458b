"""Every metric of a scope computed from raw rows in a fixed number of queries:
one workflow (``workflow_metrics``), per tool, per day, and the ops overview.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Avg, Count, F, Min, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from agents.models import Escalation, Proposal, Run
from evidence.metrics.definitions import (
    ZERO,
    Agreement,
    Cost,
    FieldAgreement,
    ToolErrors,
    budget_trips_for,
    field_agreement_for,
    reject_reasons_for,
    time_to_safe_fail_for,
    tool_errors_for,
)
from evidence.metrics.rows import (
    decisions_rows,
    escalated_filter,
    escalations_rows,
    outcomes_rows,
    received_rows,
    resolutions_rows,
    runs_rows,
    tool_steps_rows,
)
from evidence.metrics.scope import Scope, days_between, start_of_today, start_of_week
from evidence.metrics.stats import as_float, pct, ratio, wilson_interval
from governance.models import Workflow
from reviews.models import CRITICAL_REJECT_REASONS, Decision


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

    outcomes = outcomes_rows(scope).aggregate(
        resolved=Count("pk"), succeeded=Count("pk", filter=Q(succeeded=True))
    )
    received = received_rows(scope).aggregate(
        total=Count("pk"), escalated=Count("pk", filter=escalated_filter())
    )
    runs = runs_rows(scope).aggregate(
        n=Count("pk"),
        mean_tool_calls=Avg("tool_calls"),
        retried=Count("pk", filter=Q(retries__gt=0)),
        model=Coalesce(Sum("cost_usd"), ZERO),
        tool=Coalesce(Sum("tool_cost_usd"), ZERO),
    )
    decisions = decisions_rows(scope).aggregate(
        accepted=Count("pk", filter=Q(verdict=Decision.Verdict.ACCEPT)),
        edited=Count("pk", filter=Q(verdict=Decision.Verdict.EDIT)),
        rejected=Count("pk", filter=Q(verdict=Decision.Verdict.REJECT)),
        critical=Count(
            "pk",
            filter=Q(verdict=Decision.Verdict.REJECT, reason__in=CRITICAL_REJECT_REASONS),
        ),
        n=Count("pk"),
        seconds=Coalesce(Sum("seconds_spent"), 0),
        mean_seconds=Avg("seconds_spent"),
    )
    resolutions = resolutions_rows(scope).aggregate(
        n=Count("pk"), minutes=Avg("minutes_saved"), rating=Avg("packet_rating")
    )
    n_decided = decisions["accepted"] + decisions["edited"] + decisions["rejected"]
    low, high = wilson_interval(decisions["accepted"], n_decided)
    return WorkflowMetrics(
        scope=scope,
        resolved=outcomes["resolved"],
        succeeded=outcomes["succeeded"],
        agreement=Agreement(
            decisions["accepted"], decisions["edited"], decisions["rejected"], low, high
        ),
        field_agreement=field_agreement_for(scope),
        reject_reasons=reject_reasons_for(scope),
        critical_rejections=decisions["critical"],
        cost=Cost(
            model_usd=runs["model"],
            tool_usd=runs["tool"],
            reviewer_seconds=decisions["seconds"],
            outcomes=outcomes["succeeded"],
            target_usd=target,
        ),
        received=received["total"],
        escalated_items=received["escalated"],
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
        .annotate(
            accepted=Count("pk", filter=Q(verdict=Decision.Verdict.ACCEPT)),
            edited=Count("pk", filter=Q(verdict=Decision.Verdict.EDIT)),
            rejected=Count("pk", filter=Q(verdict=Decision.Verdict.REJECT)),
        )
        .order_by("proposal__tool")
    )
    result = {}
    for row in rows:
        n = row["accepted"] + row["edited"] + row["rejected"]
        low, high = wilson_interval(row["accepted"], n)
        result[row["proposal__tool"]] = Agreement(
            row["accepted"], row["edited"], row["rejected"], low, high
        )
    return result


@dataclass
class Day:
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
    interval: tuple[float, float] = field(default=(0.0, 1.0))

    @property
    def decided(self) -> int:
        return self.accepted + self.edited + self.rejected

    @property
    def agreement(self) -> float | None:
        return ratio(self.accepted, self.decided)

    @property
    def agreement_pct(self) -> float | None:
        return pct(self.agreement)

    @property
    def low_pct(self) -> float:
        return self.interval[0] * 100

    @property
    def high_pct(self) -> float:
        return self.interval[1] * 100

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

    merge(
        decisions_rows(scope)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            a=Count("pk", filter=Q(verdict=Decision.Verdict.ACCEPT)),
            e=Count("pk", filter=Q(verdict=Decision.Verdict.EDIT)),
            r=Count("pk", filter=Q(verdict=Decision.Verdict.REJECT)),
            s=Coalesce(Sum("seconds_spent"), 0),
        )
        .order_by("day"),
        accepted="a",
        edited="e",
        rejected="r",
        reviewer_seconds="s",
    )
    merge(
        runs_rows(scope)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(m=Coalesce(Sum("cost_usd"), ZERO), t=Coalesce(Sum("tool_cost_usd"), ZERO))
        .order_by("day"),
        model_usd="m",
        tool_usd="t",
    )
    merge(
        outcomes_rows(scope)
        .filter(succeeded=True)
        .annotate(day=TruncDate("resolved_at"))
        .values("day")
        .annotate(n=Count("pk"))
        .order_by("day"),
        outcomes="n",
    )
    merge(
        received_rows(scope)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("pk"))
        .order_by("day"),
        received="n",
    )
    merge(
        escalations_rows(scope)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("pk"))
        .order_by("day"),
        escalations="n",
    )
    merge(
        tool_steps_rows(scope)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("pk"), e=Count("pk", filter=~Q(error="")))
        .order_by("day"),
        tool_calls="n",
        tool_errors="e",
    )
    for day in days.values():
        day.interval = wilson_interval(day.accepted, day.decided)
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
            model=Coalesce(Sum("cost_usd", filter=Q(created_at__gte=since)), ZERO),
            tool=Coalesce(Sum("tool_cost_usd", filter=Q(created_at__gte=since)), ZERO),
            trips=Count("pk", filter=Q(created_at__gte=since, stop_reason__in=Run.BUDGET_REASONS)),
        )
        .order_by()
    }
    seconds = dict(
        decisions_rows(scope)
        .values("proposal__workflow")
        .annotate(s=Coalesce(Sum("seconds_spent"), 0))
        .order_by()
        .values_list("proposal__workflow", "s")
    )
    outcomes = dict(
        outcomes_rows(scope)
        .filter(succeeded=True)
        .values("workflow")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("workflow", "n")
    )
    pending, open_escalations = queue_state(ids)
    result = []
    for workflow in workflows:
        run = spend.get(workflow.pk, {})
        result.append(
            WorkflowSpend(
                workflow=workflow,
                today_usd=run.get("today", ZERO),
                week_usd=run.get("week", ZERO),
                cost=Cost(
                    model_usd=run.get("model", ZERO),
                    tool_usd=run.get("tool", ZERO),
                    reviewer_seconds=seconds.get(workflow.pk, 0),
                    outcomes=outcomes.get(workflow.pk, 0),
                    target_usd=workflow.cost_target_usd,
                ),
                budget_trips=run.get("trips", 0),
                pending=pending.get(workflow.pk, {}).get("n", 0),
                escalations=open_escalations.get(workflow.pk, 0),
                oldest_pending_at=pending.get(workflow.pk, {}).get("oldest"),
            )
        )
    return result


def queue_state(ids: tuple[int, ...]) -> tuple[dict[int, dict], dict[int, int]]:
    """The review backlog and open escalations per workflow (current state, not history)."""
    pending = {
        row["workflow"]: row
        for row in Proposal.objects.filter(workflow__in=ids, status=Proposal.Status.PENDING)
        .values("workflow")
        .annotate(n=Count("pk"), oldest=Min("created_at"))
        .order_by()
    }
    open_escalations = dict(
        Escalation.objects.filter(workflow__in=ids, status=Escalation.Status.OPEN)
        .values("workflow")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("workflow", "n")
    )
    return pending, open_escalations
