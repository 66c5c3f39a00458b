"""Evidence metrics, defined once.

Every number the dashboards, the ops overview and the evidence pack show is
computed here, in SQL (aggregates and grouped rollups; never a Python loop over
rows). Each metric is built on a *row set* function (``decisions_rows``,
``runs_rows`` ...); the drill-down pages list exactly those row sets, so a
number and the rows behind it cannot drift apart.

Definitions (window = ``since <= t < until``):

- task success rate: work items resolved in the window (``resolved_at``) whose
  ``succeeded`` is set; successes are ``succeeded=True``.
- agreement: accepted / (accepted + edited + rejected) over decisions made in
  the window; an edit counts as a disagreement. Wilson 95% interval.
- field-level agreement (edits only): for each argument, the share of edited
  decisions whose proposal carried it and the reviewer left it unchanged.
- cost per successful outcome: (model cost + tool cost of runs started in the
  window + reviewer seconds of decisions in the window x hourly rate) /
  successful outcomes in the window.
- escalation rate: work items received in the window with an escalation /
  work items received in the window.
- retry rate: runs with at least one retry / runs.
- time-to-safe-fail: mean of (escalation created - its run's start).
- tool error rate: tool-call steps with an error / tool-call steps, per tool.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import (
    Avg,
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from agents.models import Escalation, Proposal, Run, Step, WorkItem
from console.models import Workflow
from reviews.models import (
    CRITICAL_REJECT_REASONS,
    Decision,
    EscalationResolution,
    RejectReason,
)

ZERO = Decimal("0")
SECONDS_PER_HOUR = Decimal("3600")


# --- Scope --------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """What a metric is computed over: one workflow (or several), an optional
    tool, and a time window."""

    workflow_ids: tuple[int, ...]
    since: datetime
    until: datetime | None = None
    tool: str = ""

    @classmethod
    def for_workflow(
        cls,
        workflow: Workflow,
        *,
        since: datetime,
        until: datetime | None = None,
        tool: str = "",
    ) -> Scope:
        return cls(workflow_ids=(workflow.pk,), since=since, until=until, tool=tool)

    def window(self, field_name: str) -> Q:
        q = Q(**{f"{field_name}__gte": self.since})
        if self.until is not None:
            q &= Q(**{f"{field_name}__lt": self.until})
        return q


def reviewer_hourly_rate() -> Decimal:
    return Decimal(str(settings.TENURE_REVIEWER_HOURLY_RATE))


# --- Row sets: what each metric counts (also what its drill-down lists) --------


def decisions_rows(scope: Scope) -> QuerySet[Decision]:
    qs = Decision.objects.filter(
        scope.window("created_at"), proposal__workflow__in=scope.workflow_ids
    )
    if scope.tool:
        qs = qs.filter(proposal__tool=scope.tool)
    return qs


def outcomes_rows(scope: Scope) -> QuerySet[WorkItem]:
    """Work items resolved in the window with a known outcome."""
    qs = WorkItem.objects.filter(
        scope.window("resolved_at"), workflow__in=scope.workflow_ids, succeeded__isnull=False
    )
    if scope.tool:
        qs = qs.filter(Exists(Proposal.objects.filter(work_item=OuterRef("pk"), tool=scope.tool)))
    return qs


def received_rows(scope: Scope) -> QuerySet[WorkItem]:
    """Work items received in the window (the volume)."""
    qs = WorkItem.objects.filter(scope.window("created_at"), workflow__in=scope.workflow_ids)
    if scope.tool:
        qs = qs.filter(Exists(Proposal.objects.filter(work_item=OuterRef("pk"), tool=scope.tool)))
    return qs


def runs_rows(scope: Scope) -> QuerySet[Run]:
    qs = Run.objects.filter(scope.window("created_at"), work_item__workflow__in=scope.workflow_ids)
    if scope.tool:
        # A run that proposed several tools counts fully towards each of them.
        qs = qs.filter(Exists(Proposal.objects.filter(run=OuterRef("pk"), tool=scope.tool)))
    return qs


def tool_steps_rows(scope: Scope) -> QuerySet[Step]:
    qs = Step.objects.filter(
        scope.window("created_at"),
        run__work_item__workflow__in=scope.workflow_ids,
        kind=Step.Kind.TOOL_CALL,
    )
    if scope.tool:
        qs = qs.filter(name=scope.tool)
    return qs


def escalations_rows(scope: Scope) -> QuerySet[Escalation]:
    return Escalation.objects.filter(scope.window("created_at"), workflow__in=scope.workflow_ids)


def resolutions_rows(scope: Scope) -> QuerySet[EscalationResolution]:
    return EscalationResolution.objects.filter(
        scope.window("created_at"), escalation__workflow__in=scope.workflow_ids
    )


def escalated_filter() -> Exists:
    return Exists(Escalation.objects.filter(work_item=OuterRef("pk")))


# --- Pure helpers ----------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion.

    With no observations nothing is known: the interval is the whole [0, 1].
    """
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError("successes must be between 0 and n")
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def ratio(part: int | float | Decimal, whole: int | float | Decimal) -> float | None:
    """part / whole, or None when there is nothing to divide by (shown as a dash)."""
    if not whole:
        return None
    return float(part) / float(whole)


def pct(value: float | None) -> float | None:
    """A fraction as a percentage, for display (None stays None)."""
    return None if value is None else value * 100


def cost_per_outcome(
    *, model_cost: Decimal, tool_cost: Decimal, reviewer_seconds: int, outcomes: int
) -> Decimal | None:
    total = model_cost + tool_cost + reviewer_cost(reviewer_seconds)
    if not outcomes:
        return None
    return total / outcomes


def reviewer_cost(seconds: int) -> Decimal:
    return Decimal(seconds) * reviewer_hourly_rate() / SECONDS_PER_HOUR


# --- Results -------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    accepted: int
    edited: int
    rejected: int
    low: float
    high: float

    @property
    def n(self) -> int:
        return self.accepted + self.edited + self.rejected

    @property
    def rate(self) -> float | None:
        return ratio(self.accepted, self.n)

    @property
    def rate_pct(self) -> float | None:
        return pct(self.rate)

    @property
    def low_pct(self) -> float:
        return self.low * 100

    @property
    def high_pct(self) -> float:
        return self.high * 100


@dataclass(frozen=True)
class FieldAgreement:
    field: str
    edited_decisions: int  # edited decisions whose proposal or edit named the field
    changed: int

    @property
    def rate(self) -> float | None:
        return ratio(self.edited_decisions - self.changed, self.edited_decisions)

    @property
    def rate_pct(self) -> float | None:
        return pct(self.rate)


@dataclass(frozen=True)
class Cost:
    model_usd: Decimal
    tool_usd: Decimal
    reviewer_seconds: int
    outcomes: int
    target_usd: Decimal | None = None

    @property
    def reviewer_usd(self) -> Decimal:
        return reviewer_cost(self.reviewer_seconds)

    @property
    def total_usd(self) -> Decimal:
        return self.model_usd + self.tool_usd + self.reviewer_usd

    @property
    def per_outcome(self) -> Decimal | None:
        return cost_per_outcome(
            model_cost=self.model_usd,
            tool_cost=self.tool_usd,
            reviewer_seconds=self.reviewer_seconds,
            outcomes=self.outcomes,
        )

    @property
    def within_target(self) -> bool | None:
        if self.per_outcome is None or self.target_usd is None:
            return None
        return self.per_outcome <= self.target_usd


@dataclass(frozen=True)
class ToolErrors:
    tool: str
    calls: int
    errors: int
    budget: float | None = None

    @property
    def rate(self) -> float | None:
        return ratio(self.errors, self.calls)

    @property
    def rate_pct(self) -> float | None:
        return pct(self.rate)

    @property
    def budget_pct(self) -> float | None:
        return pct(self.budget)

    @property
    def budget_remaining_pct(self) -> float | None:
        return pct(self.budget_remaining)

    @property
    def budget_remaining(self) -> float | None:
        """The share of the error budget not yet used (negative when over budget)."""
        if self.budget is None or self.rate is None:
            return None
        if self.budget == 0:
            return 0.0 if self.errors == 0 else -1.0
        return 1 - self.rate / self.budget


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


# --- Single metrics ----------------------------------------------------------------


def agreement_for(scope: Scope) -> Agreement:
    row = decisions_rows(scope).aggregate(
        accepted=Count("pk", filter=Q(verdict=Decision.Verdict.ACCEPT)),
        edited=Count("pk", filter=Q(verdict=Decision.Verdict.EDIT)),
        rejected=Count("pk", filter=Q(verdict=Decision.Verdict.REJECT)),
    )
    n = row["accepted"] + row["edited"] + row["rejected"]
    low, high = wilson_interval(row["accepted"], n)
    return Agreement(row["accepted"], row["edited"], row["rejected"], low, high)


def reject_reasons_for(scope: Scope) -> dict[str, int]:
    return dict(
        decisions_rows(scope)
        .filter(verdict=Decision.Verdict.REJECT)
        .values("reason")
        .annotate(n=Count("pk"))
        .order_by("-n", "reason")
        .values_list("reason", "n")
    )


# JSON object keys as rows: a set-returning function each database spells its own way.
_KEYS_SQL = {
    "postgresql": "CROSS JOIN LATERAL jsonb_object_keys(CASE WHEN jsonb_typeof({col}) = 'object' "
    "THEN {col} ELSE '{{}}'::jsonb END) AS k",
    "sqlite": "CROSS JOIN json_each(CASE WHEN json_type({col}) = 'object' "
    "THEN {col} ELSE '{{}}' END) AS k",
}
_KEY_NAME = {"postgresql": "k", "sqlite": "k.key"}


def field_agreement_for(scope: Scope) -> list[FieldAgreement]:
    """For edited decisions: per argument, how often the reviewer changed it.

    A decision counts for a field when its proposal carried the field or its
    edit touched it; it counts as changed when the diff names the field. One
    grouped SQL query whatever the number of decisions.
    """
    vendor = connection.vendor
    if vendor not in _KEYS_SQL:
        return []
    edited = decisions_rows(scope).filter(verdict=Decision.Verdict.EDIT)
    ids_sql, ids_params = edited.order_by().values("pk").query.sql_with_params()
    decision, proposal = Decision._meta.db_table, Proposal._meta.db_table
    key = _KEY_NAME[vendor]
    sql = (
        "SELECT field, COUNT(DISTINCT id), COUNT(DISTINCT CASE WHEN src = 'diff' THEN id END) "
        f"FROM (SELECT d.id AS id, {key} AS field, 'args' AS src FROM {decision} d "
        f"JOIN {proposal} p ON p.id = d.proposal_id {_KEYS_SQL[vendor].format(col='p.arguments')} "
        f"WHERE d.id IN ({ids_sql}) "
        f"UNION ALL SELECT d.id, {key}, 'diff' FROM {decision} d "
        f"{_KEYS_SQL[vendor].format(col='d.diff')} WHERE d.id IN ({ids_sql})) AS t "
        "GROUP BY field"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, (*ids_params, *ids_params))
        rows = cursor.fetchall()
    return [
        FieldAgreement(field=name, edited_decisions=n, changed=changed)
        for name, n, changed in sorted(rows, key=lambda row: (-row[2], row[0]))
    ]


def cost_for(scope: Scope, target_usd: Decimal | None = None) -> Cost:
    runs = runs_rows(scope).aggregate(
        model=Coalesce(Sum("cost_usd"), ZERO), tool=Coalesce(Sum("tool_cost_usd"), ZERO)
    )
    seconds = decisions_rows(scope).aggregate(s=Coalesce(Sum("seconds_spent"), 0))["s"]
    outcomes = outcomes_rows(scope).filter(succeeded=True).count()
    return Cost(
        model_usd=runs["model"],
        tool_usd=runs["tool"],
        reviewer_seconds=seconds,
        outcomes=outcomes,
        target_usd=target_usd,
    )


def tool_errors_for(scope: Scope, budget: float | None = None) -> list[ToolErrors]:
    rows = (
        tool_steps_rows(scope)
        .values("name")
        .annotate(calls=Count("pk"), errors=Count("pk", filter=~Q(error="")))
        .order_by("name")
    )
    return [
        ToolErrors(tool=row["name"], calls=row["calls"], errors=row["errors"], budget=budget)
        for row in rows
    ]


def budget_trips_for(scope: Scope) -> dict[str, int]:
    return dict(
        runs_rows(scope)
        .filter(stop_reason__in=Run.BUDGET_REASONS)
        .values("stop_reason")
        .annotate(n=Count("pk"))
        .order_by("-n", "stop_reason")
        .values_list("stop_reason", "n")
    )


def time_to_safe_fail_for(scope: Scope) -> timedelta | None:
    return (
        escalations_rows(scope)
        .filter(run__started_at__isnull=False)
        .aggregate(
            mean=Avg(
                ExpressionWrapper(
                    F("created_at") - F("run__started_at"), output_field=DurationField()
                )
            )
        )["mean"]
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
        mean_tool_calls=_float(runs["mean_tool_calls"]),
        retried_runs=runs["retried"],
        time_to_safe_fail=time_to_safe_fail_for(scope),
        tool_errors=tool_errors_for(scope, budget),
        budget_trips=budget_trips_for(scope),
        decisions=decisions["n"],
        reviewer_seconds_per_decision=_float(decisions["mean_seconds"]),
        resolutions=resolutions["n"],
        minutes_saved_per_escalation=_float(resolutions["minutes"]),
        mean_packet_rating=_float(resolutions["rating"]),
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


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


# --- Daily rollups ------------------------------------------------------------------


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


def days_between(since: datetime, until: datetime) -> list[date]:
    first = timezone.localdate(since)
    last = timezone.localdate(until)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


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


# --- Ops overview ---------------------------------------------------------------------


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


def start_of_today(now: datetime | None = None) -> datetime:
    now = timezone.localtime(now or timezone.now())
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def start_of_week(now: datetime | None = None) -> datetime:
    today = start_of_today(now)
    return today - timedelta(days=today.weekday())


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


# --- Drill-down: the rows behind each number ------------------------------------------

ERR_UNKNOWN_METRIC = "“{metric}” is not a metric with rows to show."
ERR_BAD_FILTER = "“{value}” is not a valid value for {name}."

# metric -> (row set, time field that TruncDate groups daily rollups by)
ROW_SETS = {
    "decisions": (decisions_rows, "created_at"),
    "outcomes": (outcomes_rows, "resolved_at"),
    "received": (received_rows, "created_at"),
    "runs": (runs_rows, "created_at"),
    "tool_steps": (tool_steps_rows, "created_at"),
    "escalations": (escalations_rows, "created_at"),
    "resolutions": (resolutions_rows, "created_at"),
}

_YES = {"1", "true", "yes"}
_NO = {"0", "false", "no"}


def _flag(name: str, value: str) -> bool:
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise ValueError(ERR_BAD_FILTER.format(value=value, name=name))


def _choice(name: str, value: str, allowed: Iterable[str]) -> str:
    if value not in set(allowed):
        raise ValueError(ERR_BAD_FILTER.format(value=value, name=name))
    return value


def drilldown_rows(
    scope: Scope, metric: str, filters: dict[str, str], *, day: date | None = None
) -> QuerySet:
    """The rows a number was computed from. Raises ValueError on a bad metric or filter.

    Filters narrow a row set the way the matching aggregate does (e.g. the
    numerator of the escalation rate is ``received`` with ``escalated=1``).
    """
    if metric not in ROW_SETS:
        raise ValueError(ERR_UNKNOWN_METRIC.format(metric=metric))
    rows_for, time_field = ROW_SETS[metric]
    qs = rows_for(scope)
    if metric == "outcomes" and filters.get("succeeded"):
        qs = qs.filter(succeeded=_flag("succeeded", filters["succeeded"]))
    if metric == "decisions":
        if filters.get("verdict"):
            qs = qs.filter(verdict=_choice("verdict", filters["verdict"], Decision.Verdict.values))
        if filters.get("reason"):
            qs = qs.filter(
                verdict=Decision.Verdict.REJECT,
                reason=_choice("reason", filters["reason"], _reject_reason_values()),
            )
        if filters.get("critical") and _flag("critical", filters["critical"]):
            qs = qs.filter(verdict=Decision.Verdict.REJECT, reason__in=CRITICAL_REJECT_REASONS)
        if filters.get("kind"):
            qs = qs.filter(kind=_choice("kind", filters["kind"], Decision.Kind.values))
        if filters.get("field"):
            field_name = filters["field"]
            qs = qs.filter(verdict=Decision.Verdict.EDIT).filter(
                Q(diff__has_key=field_name) | Q(proposal__arguments__has_key=field_name)
            )
            if filters.get("changed") and _flag("changed", filters["changed"]):
                qs = qs.filter(diff__has_key=field_name)
    if metric == "received" and filters.get("escalated"):
        wanted = _flag("escalated", filters["escalated"])
        qs = qs.filter(escalated_filter() if wanted else ~escalated_filter())
    if metric == "runs":
        if filters.get("retried") and _flag("retried", filters["retried"]):
            qs = qs.filter(retries__gt=0)
        if filters.get("budget") and _flag("budget", filters["budget"]):
            qs = qs.filter(stop_reason__in=Run.BUDGET_REASONS)
        if filters.get("stop_reason"):
            qs = qs.filter(
                stop_reason=_choice("stop_reason", filters["stop_reason"], Run.StopReason.values)
            )
    if metric == "tool_steps" and filters.get("errors") and _flag("errors", filters["errors"]):
        qs = qs.exclude(error="")
    if (
        metric == "escalations"
        and filters.get("with_run")
        and _flag("with_run", filters["with_run"])
    ):
        qs = qs.filter(run__started_at__isnull=False)
    if day is not None:
        qs = qs.annotate(_day=TruncDate(time_field)).filter(_day=day)
    return qs.order_by(f"-{time_field}", "-pk")


def _reject_reason_values() -> list[str]:
    return list(RejectReason.values)


# --- Audit integrity (read side) -------------------------------------------------------
