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

The functions above compute from raw rows over any window (the gate, the
breaker, the evidence pack and the API use them). The dashboards and the ops
overview read the same numbers from rollups instead (``MetricDay``: closed days
stored once; today's closed hours rolled up once into the cache; only the last
hour or two computed live; see "Rollups" below), so their cost grows neither with
the history nor through the day.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
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
from evidence.models import MetricDay
from governance.models import Workflow
from reviews.models import (
    CRITICAL_REJECT_REASONS,
    Decision,
    EscalationResolution,
    RejectReason,
)

logger = logging.getLogger(__name__)

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
    pending, open_escalations = _queue_state(ids)
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


# --- Rollups: closed days stored, today live ---------------------------------------------
#
# The dashboards read ``MetricDay`` rows (additive sums per workflow x tool x day)
# for closed days, the open day's closed hours as the same sums (see "The open
# day's closed hours") and compute the rest of the window live, from raw rows over
# an index range, with the same function that rolls a day up, so they cannot
# drift. Which timestamp buckets each column (all in the current time zone, as
# ``TruncDate`` does for the live metrics above):
#
# - decisions, verdicts, reject reasons, critical rejections, field-level edits,
#   reviewer seconds: ``Decision.created_at`` (a late decision on an old proposal
#   counts on the day it was made), per ``Proposal.tool``;
# - tool calls and tool errors: ``Step.created_at``, per ``Step.name``;
# - runs, model and tool cost, tool calls per run, retries, budget trips:
#   ``Run.created_at``;
# - received work items: ``WorkItem.created_at``; escalated items: by their first
#   escalation's ``created_at``, as ``escalated_same_day`` when that is the day the
#   item was received, else keyed by the day the item was received (so an
#   escalation landing now on an item of a closed day or hour changes the live
#   row, never the closed one's);
# - outcomes (resolved, succeeded): ``WorkItem.resolved_at``;
# - escalations and time-to-safe-fail: ``Escalation.created_at``;
# - escalation resolutions: ``EscalationResolution.created_at``.
#
# Every one of those timestamps is set when the row is written, so a closed day
# only changes if a run started before midnight is still writing after it
# (``ROLLUP_GRACE`` keeps a day live for that long) or rows are backfilled or
# corrected by hand (call ``metric_days_invalidate`` for the days touched).

ROLLUP_GRACE = timedelta(hours=1)
ROLLUP_CHUNK_DAYS = 31

_SUMMED = (
    "decisions",
    "accepted",
    "edited",
    "rejected",
    "critical",
    "reviewer_seconds",
    "tool_calls",
    "tool_errors",
    "runs",
    "run_tool_calls",
    "retried_runs",
    "model_usd",
    "tool_usd",
    "received",
    "escalated_same_day",
    "resolved",
    "succeeded",
    "escalations",
    "safe_fail_n",
    "safe_fail_us",
    "resolutions",
    "minutes_saved",
    "rating_sum",
    "rating_n",
)

_VERDICT_FIELD = {
    Decision.Verdict.ACCEPT: "accepted",
    Decision.Verdict.EDIT: "edited",
    Decision.Verdict.REJECT: "rejected",
}


# The groups of MetricDay columns, one query each (see metric_days_compute).
ALL_PARTS = frozenset(
    ("decisions", "fields", "steps", "runs", "received", "outcomes", "escalations", "resolutions")
)
# What the ops overview reads: spend, reviewer seconds, successes, budget trips.
OPS_PARTS = frozenset(("decisions", "runs", "outcomes"))


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time()))


def _as_date(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def last_closed_day(now: datetime) -> date:
    """The last day that may be rolled up: it ended at least ``ROLLUP_GRACE`` ago."""
    return timezone.localdate(now - ROLLUP_GRACE) - timedelta(days=1)


def metric_days_compute(
    workflow_ids: Iterable[int],
    *,
    since: datetime,
    until: datetime | None = None,
    parts: frozenset[str] = ALL_PARTS,
) -> dict[tuple[int, date, str], MetricDay]:
    """The ``MetricDay`` rows (unsaved) of ``since <= t < until``: eight grouped
    queries whatever the data. This is the one definition of every rolled column;
    it is used both to roll closed days up and to compute today live.

    ``parts`` names the groups of columns to compute (one query each); the others
    stay zero. Rows to store are always computed whole; a reader that needs only
    some columns (the ops overview) computes its live slice with only those."""
    ids = tuple(workflow_ids)
    scope = Scope(workflow_ids=ids, since=since, until=until)
    rows: dict[tuple[int, date, str], MetricDay] = {}

    def row(workflow_id: int, day: date | str, tool: str = "") -> MetricDay:
        key = (workflow_id, _as_date(day), tool)
        if key not in rows:
            rows[key] = MetricDay(workflow_id=workflow_id, day=key[1], tool=tool)
        return rows[key]

    if "decisions" in parts:
        # Decisions. The verdict filter changes nothing (every decision has one of
        # the three) but lets the (verdict, created_at) index bound the scan.
        for d in (
            decisions_rows(scope)
            .filter(verdict__in=Decision.Verdict.values)
            .annotate(day=TruncDate("created_at"))
            .values("proposal__workflow", "day", "proposal__tool", "verdict", "reason")
            .annotate(n=Count("pk"), s=Coalesce(Sum("seconds_spent"), 0))
            .order_by()
        ):
            r = row(d["proposal__workflow"], d["day"], d["proposal__tool"])
            r.decisions += d["n"]
            r.reviewer_seconds += d["s"]
            setattr(
                r, _VERDICT_FIELD[d["verdict"]], getattr(r, _VERDICT_FIELD[d["verdict"]]) + d["n"]
            )
            if d["verdict"] == Decision.Verdict.REJECT:
                r.reject_reasons[d["reason"]] = r.reject_reasons.get(d["reason"], 0) + d["n"]
                if d["reason"] in CRITICAL_REJECT_REASONS:
                    r.critical += d["n"]
    if "fields" in parts:
        for workflow_id, day, tool, name, n, changed in _field_rows(scope):
            row(workflow_id, day, tool).fields[name] = [n, changed]
    if "steps" in parts:
        for s in (
            tool_steps_rows(scope)
            .annotate(day=TruncDate("created_at"))
            .values("run__work_item__workflow", "day", "name")
            .annotate(n=Count("pk"), e=Count("pk", filter=~Q(error="")))
            .order_by()
        ):
            r = row(s["run__work_item__workflow"], s["day"], s["name"])
            r.tool_calls += s["n"]
            r.tool_errors += s["e"]
    if "runs" in parts:
        # Runs; the status filter only lets the (status, created_at) index bound the scan.
        for run in (
            runs_rows(scope)
            .filter(status__in=Run.Status.values)
            .annotate(day=TruncDate("created_at"))
            .values("work_item__workflow", "day", "stop_reason")
            .annotate(
                n=Count("pk"),
                calls=Coalesce(Sum("tool_calls"), 0),
                retried=Count("pk", filter=Q(retries__gt=0)),
                model=Coalesce(Sum("cost_usd"), ZERO),
                tool=Coalesce(Sum("tool_cost_usd"), ZERO),
            )
            .order_by()
        ):
            r = row(run["work_item__workflow"], run["day"])
            r.runs += run["n"]
            r.run_tool_calls += run["calls"]
            r.retried_runs += run["retried"]
            r.model_usd += run["model"]
            r.tool_usd += run["tool"]
            if run["stop_reason"] in Run.BUDGET_REASONS:
                reason = run["stop_reason"]
                r.budget_trips[reason] = r.budget_trips.get(reason, 0) + run["n"]
    if "received" in parts:
        for item in (
            received_rows(scope)
            .filter(status__in=WorkItem.Status.values)
            .annotate(day=TruncDate("created_at"))
            .values("workflow", "day")
            .annotate(n=Count("pk"))
            .order_by()
        ):
            row(item["workflow"], item["day"]).received += item["n"]
    if "outcomes" in parts:
        for item in (
            outcomes_rows(scope)
            .annotate(day=TruncDate("resolved_at"))
            .values("workflow", "day")
            .annotate(n=Count("pk"), ok=Count("pk", filter=Q(succeeded=True)))
            .order_by()
        ):
            r = row(item["workflow"], item["day"])
            r.resolved += item["n"]
            r.succeeded += item["ok"]
    if "escalations" in parts:
        first = ~Exists(
            Escalation.objects.filter(
                work_item=OuterRef("work_item"), created_at__lt=OuterRef("created_at")
            )
        )
        safe_fail = Q(run__started_at__isnull=False)
        for esc in (
            escalations_rows(scope)
            .annotate(day=TruncDate("created_at"), received=TruncDate("work_item__created_at"))
            .values("workflow", "day", "received")
            .annotate(
                n=Count("pk"),
                safe_n=Count("pk", filter=safe_fail),
                safe=Sum(
                    ExpressionWrapper(
                        F("created_at") - F("run__started_at"), output_field=DurationField()
                    ),
                    filter=safe_fail,
                ),
                first=Count("work_item", distinct=True, filter=first),
            )
            .order_by()
        ):
            r = row(esc["workflow"], esc["day"])
            r.escalations += esc["n"]
            r.safe_fail_n += esc["safe_n"]
            if esc["safe"] is not None:
                r.safe_fail_us += esc["safe"] // timedelta(microseconds=1)
            # An escalated item is counted where its first escalation lands, so that a
            # range closed before the escalation (an earlier hour, a closed day) never
            # needs recomputing: as ``escalated_same_day`` when that is the day the
            # item was received, else in ``escalated_later`` under that day.
            if not esc["first"]:
                continue
            if _as_date(esc["received"]) == _as_date(esc["day"]):
                r.escalated_same_day += esc["first"]
            else:
                key = _as_date(esc["received"]).isoformat()
                r.escalated_later[key] = r.escalated_later.get(key, 0) + esc["first"]
    if "resolutions" in parts:
        for res in (
            resolutions_rows(scope)
            .annotate(day=TruncDate("created_at"))
            .values("escalation__workflow", "day")
            .annotate(
                n=Count("pk"),
                minutes=Coalesce(Sum("minutes_saved"), 0),
                rating=Coalesce(Sum("packet_rating"), 0),
                rated=Count("packet_rating"),
            )
            .order_by()
        ):
            r = row(res["escalation__workflow"], res["day"])
            r.resolutions += res["n"]
            r.minutes_saved += res["minutes"]
            r.rating_sum += res["rating"]
            r.rating_n += res["rated"]
    return rows


def _field_rows(scope: Scope) -> list[tuple[int, date, str, str, int, int]]:
    """Field-level edit counts per (workflow, day, tool, field); see field_agreement_for."""
    vendor = connection.vendor
    if vendor not in _KEYS_SQL:
        return []
    edited = decisions_rows(scope).filter(verdict=Decision.Verdict.EDIT)
    ids_sql, ids_params = edited.order_by().values("pk").query.sql_with_params()
    decision, proposal = Decision._meta.db_table, Proposal._meta.db_table
    key = _KEY_NAME[vendor]
    tzname = timezone.get_current_timezone_name() if settings.USE_TZ else None
    day_sql, day_params = connection.ops.datetime_cast_date_sql("d.created_at", (), tzname)
    parts, params = [], []
    for src, col in (("args", "p.arguments"), ("diff", "d.diff")):
        parts.append(
            f"SELECT d.id AS id, p.workflow_id AS wf, {day_sql} AS day, p.tool AS tool, "
            f"{key} AS field, '{src}' AS src FROM {decision} d "
            f"JOIN {proposal} p ON p.id = d.proposal_id {_KEYS_SQL[vendor].format(col=col)} "
            f"WHERE d.id IN ({ids_sql})"
        )
        params += [*day_params, *ids_params]
    sql = (
        "SELECT wf, day, tool, field, COUNT(DISTINCT id), "
        "COUNT(DISTINCT CASE WHEN src = 'diff' THEN id END) "
        f"FROM ({' UNION ALL '.join(parts)}) AS t GROUP BY wf, day, tool, field"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(wf, _as_date(day), tool, f, n, c) for wf, day, tool, f, n, c in cursor.fetchall()]


def _save_rolled(rows: Iterable[MetricDay]) -> None:
    # One statement (bulk_create is atomic); a concurrent roll of the same day
    # computed the same sums, so either copy will do.
    MetricDay.objects.bulk_create(list(rows), ignore_conflicts=True)


def _rolled_days(workflow_ids: tuple[int, ...], first: date, last: date) -> set[tuple[int, date]]:
    return set(
        MetricDay.objects.filter(
            workflow__in=workflow_ids, day__gte=first, day__lte=last, tool=""
        ).values_list("workflow", "day")
    )


def _roll(missing: set[tuple[int, date]], last: date) -> list[MetricDay]:
    """Compute and store the rows of the ``missing`` (workflow, closed day) pairs."""
    if not missing:
        return []
    first = min(day for _, day in missing)
    computed = metric_days_compute(
        {wf for wf, _ in missing}, since=_midnight(first), until=_midnight(last + timedelta(1))
    )
    rows = [r for key, r in computed.items() if key[:2] in missing]
    for wf, day in missing:
        if (wf, day, "") not in computed:
            rows.append(MetricDay(workflow_id=wf, day=day, tool=""))
    _save_rolled(rows)
    return rows


def metric_days_read(
    workflows: Iterable[Workflow], *, since: datetime, now: datetime
) -> list[MetricDay]:
    """Every ``MetricDay`` row of the workflows from ``since``'s day up to now: the
    stored rows of closed days, the closed hours of the open day(s) (rolled up once
    and kept in the cache, see ``open_hours_read``) and the last hour or two computed
    live. A fixed number of queries whatever the data: one read and the live slice's
    eight (a closed day found missing is rolled up and stored first, once; closed
    hours found missing likewise)."""
    workflows = list(workflows)
    ids = tuple(w.pk for w in workflows)
    first = timezone.localdate(since)
    last = last_closed_day(now)
    stored: list[MetricDay] = []
    if first <= last:
        stored = list(MetricDay.objects.filter(workflow__in=ids, day__gte=first, day__lte=last))
        rolled = {(r.workflow_id, r.day) for r in stored if r.tool == ""}
        stored += _roll(_missing_days(ids, first, last, rolled), last)
    return stored + _open_rows(workflows, first=first, now=now)


def _missing_days(
    ids: tuple[int, ...], first: date, last: date, rolled: set[tuple[int, date]]
) -> set[tuple[int, date]]:
    closed = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return {(wf, day) for wf in ids for day in closed if (wf, day) not in rolled}


def _open_rows(
    workflows: list[Workflow], *, first: date, now: datetime, parts: frozenset[str] = ALL_PARTS
) -> list[MetricDay]:
    """The rows of the days not closed yet (from ``first``'s day): their closed hours
    (whole rows, from the cache) and the live slice after them (``parts`` only)."""
    open_start = _midnight(max(first, last_closed_day(now) + timedelta(days=1)))
    hours_until = last_closed_hour(now)
    rows: list[MetricDay] = []
    live_since = open_start
    if hours_until > open_start:
        rows = open_hours_read(workflows, start=open_start, until=hours_until)
        live_since = hours_until
    live = _compute_recent(tuple(w.pk for w in workflows), since=live_since, parts=parts)
    return rows + list(live.values())


def _compute_recent(
    ids: tuple[int, ...],
    *,
    since: datetime,
    until: datetime | None = None,
    parts: frozenset[str] = ALL_PARTS,
) -> dict[tuple[int, date, str], MetricDay]:
    """``metric_days_compute`` over a recent range (at most a day), planned as such."""
    if connection.in_atomic_block:
        # Planner settings would outlive a savepoint: leave the caller's transaction be.
        return metric_days_compute(ids, since=since, until=until, parts=parts)
    with transaction.atomic():
        _plan_for_small_ranges()
        return metric_days_compute(ids, since=since, until=until, parts=parts)


# --- The open day's closed hours ---------------------------------------------------------
#
# The day (or two, within ``ROLLUP_GRACE`` after midnight) not closed yet is read as
# a prefix rolled up to the last closed hour plus a live slice of at most
# ``ROLLUP_GRACE`` + one hour, so today's cost does not grow through the day. An
# hour closes on the rule a day does (it ended ``ROLLUP_GRACE`` ago), so the two
# give the same guarantee; a row written later into a closed hour (a backfill, a
# correction) shows once ``metric_days_invalidate`` is called for its day.
#
# The prefix sums of [midnight, hour) live in the cache, not in a table: they are
# needed only until the day closes and ``MetricDay`` takes over, and losing them
# (a Redis restart) costs one recomputation, never a wrong number. Each hour's
# prefix is the previous hour's plus that hour, so an hour's rows are read once.

OPEN_HOUR = timedelta(hours=1)
OPEN_CACHE_SECONDS = int((timedelta(days=1) + 2 * ROLLUP_GRACE + OPEN_HOUR).total_seconds())
# Columns of a cached row, after (day, tool); bump the key's version when they change.
_OPEN_COLUMNS = (*_SUMMED, "reject_reasons", "fields", "budget_trips", "escalated_later")
_OPEN_KEY_VERSION = 1


def last_closed_hour(now: datetime) -> datetime:
    """The end of the last hour that may be rolled up (it ended ``ROLLUP_GRACE`` ago).
    Whole UTC hours: local midnights fall on them in every zone a whole number of
    hours from UTC, and a prefix never crosses midnight (see ``metric_days_read``)."""
    ended = (now - ROLLUP_GRACE).astimezone(UTC)
    return ended.replace(minute=0, second=0, microsecond=0)


def _open_key(workflow: Workflow, start: datetime, until: datetime) -> str:
    # The workflow's creation time with its id: a key stays unique when databases
    # are recreated around one cache (tests, restores), as ids start over there.
    created = workflow.created_at.timestamp() if workflow.created_at else 0
    return (
        f"metrics:open:v{_OPEN_KEY_VERSION}:{workflow.pk}:{created:.6f}:"
        f"{start.timestamp():.0f}:{until.timestamp():.0f}"
    )


def _open_pack(rows: Iterable[MetricDay]) -> list[tuple]:
    return [(r.day, r.tool, *(getattr(r, c) for c in _OPEN_COLUMNS)) for r in rows]


def _open_unpack(workflow_id: int, packed: list[tuple]) -> list[MetricDay]:
    rows = []
    for day, tool, *values in packed:
        r = MetricDay(workflow_id=workflow_id, day=day, tool=tool)
        for column, value in zip(_OPEN_COLUMNS, values, strict=True):
            setattr(r, column, value)
        rows.append(r)
    return rows


def metric_rows_merge(rows: Iterable[MetricDay]) -> list[MetricDay]:
    """Rows of the same (workflow, day, tool) summed into one: every column is
    additive over disjoint time ranges (a row counts each event once, where its
    timestamp falls)."""
    merged: dict[tuple[int, date, str], MetricDay] = {}
    for r in rows:
        key = (r.workflow_id, r.day, r.tool)
        total = merged.get(key)
        if total is None:
            merged[key] = total = MetricDay(workflow_id=r.workflow_id, day=r.day, tool=r.tool)
        for column in _SUMMED:
            setattr(total, column, getattr(total, column) + getattr(r, column))
        for column in ("reject_reasons", "budget_trips", "escalated_later"):
            counts = getattr(total, column)
            for k, n in getattr(r, column).items():
                counts[k] = counts.get(k, 0) + n
        for name, (n, changed) in r.fields.items():
            before = total.fields.get(name, [0, 0])
            total.fields[name] = [before[0] + n, before[1] + changed]
    return list(merged.values())


def open_hours_read(
    workflows: Iterable[Workflow], *, start: datetime, until: datetime
) -> list[MetricDay]:
    """The rows of [start, until) (whole hours of one open day) for the workflows,
    from the cache; a prefix missing there is the previous hour's plus one hour
    computed from raw rows, or the whole range when that is missing too. At most
    sixteen queries (two computations), none when every prefix is cached."""
    workflows = list(workflows)
    keys = {w.pk: _open_key(w, start, until) for w in workflows}
    previous_until = until - OPEN_HOUR
    previous = (
        {w.pk: _open_key(w, start, previous_until) for w in workflows}
        if previous_until > start
        else {}
    )
    try:
        cached = cache.get_many([*keys.values(), *previous.values()])
    except Exception:  # noqa: BLE001 - the cache (Redis) is down
        # Correct and slower: compute the range from raw rows and keep nothing.
        logger.warning("metric rollups of the open day computed live: cache unavailable")
        cached = None
    found = cached or {}
    rows: list[MetricDay] = []
    extend: dict[int, list[MetricDay]] = {}  # workflow -> its previous hour's prefix
    whole: list[int] = []
    for wf, key in keys.items():
        if key in found:
            rows += _open_unpack(wf, found[key])
        elif previous.get(wf) in found:
            extend[wf] = _open_unpack(wf, found[previous[wf]])
        else:
            whole.append(wf)
    fresh: dict[int, list[MetricDay]] = {}
    if extend:
        hour = _compute_recent(tuple(extend), since=previous_until, until=until)
        for wf, base in extend.items():
            fresh[wf] = metric_rows_merge(
                [*base, *(r for r in hour.values() if r.workflow_id == wf)]
            )
    if whole:
        computed = _compute_recent(tuple(whole), since=start, until=until)
        for wf in whole:
            fresh[wf] = [r for r in computed.values() if r.workflow_id == wf]
    for wf_rows in fresh.values():
        rows += wf_rows
    if fresh and cached is not None:
        try:
            cache.set_many(
                {keys[wf]: _open_pack(wf_rows) for wf, wf_rows in fresh.items()},
                timeout=OPEN_CACHE_SECONDS,
            )
        except Exception:  # noqa: BLE001 - the cache (Redis) is down
            logger.warning("metric rollups of the open day not kept: cache unavailable")
    return rows


def open_hours_roll(*, now: datetime | None = None) -> int:
    """Roll the open day's closed hours of every workflow up into the cache (the
    periodic task calls it, so a request seldom has to). Returns the workflows read."""
    now = now or timezone.now()
    workflows = list(Workflow.objects.all())
    start = _midnight(last_closed_day(now) + timedelta(days=1))
    until = last_closed_hour(now)
    if not workflows or until <= start:
        return 0
    open_hours_read(workflows, start=start, until=until)
    return len(workflows)


def _open_keys_of_days(workflows: Iterable[Workflow], first: date, last: date) -> list[str]:
    """Every cache key a prefix of the days ``first..last`` can have."""
    keys = []
    for i in range((last - first).days + 1):
        start = _midnight(first + timedelta(days=i))
        end = _midnight(first + timedelta(days=i + 1))
        until = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + OPEN_HOUR
        while until <= end:
            keys += [_open_key(w, start, until) for w in workflows]
            until += OPEN_HOUR
    return keys


def _plan_for_small_ranges() -> None:
    """Plan today's slice as what it is, for this transaction only: short index
    ranges joined row by row. Left alone, PostgreSQL may hash-join a day of runs
    against every work item (a sequential scan of the table), launch parallel
    workers or JIT-compile, each costing more than the query (measured at 1M
    decisions: 340 ms -> 26 ms for the runs query)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('max_parallel_workers_per_gather', '0', true), "
                "set_config('jit', 'off', true), set_config('enable_hashjoin', 'off', true), "
                "set_config('enable_mergejoin', 'off', true)"
            )


def metric_days_roll(
    *,
    workflow_ids: Iterable[int] | None = None,
    days: int = 400,
    now: datetime | None = None,
    refresh: bool = False,
) -> int:
    """Roll up the closed days of the last ``days`` not rolled yet (all of them
    again with ``refresh``). Idempotent; the periodic task calls it. Returns the
    number of (workflow, day) pairs rolled."""
    now = now or timezone.now()
    ids = (
        tuple(workflow_ids)
        if workflow_ids is not None
        else tuple(Workflow.objects.values_list("pk", flat=True))
    )
    last = last_closed_day(now)
    first = last - timedelta(days=days - 1)
    if not ids or first > last:
        return 0
    if refresh:
        metric_days_invalidate(workflow_ids=ids, since=first, until=last)
    rolled = _rolled_days(ids, first, last)
    count = 0
    chunk_start = first
    while chunk_start <= last:
        chunk_end = min(last, chunk_start + timedelta(days=ROLLUP_CHUNK_DAYS - 1))
        missing = {
            (wf, chunk_start + timedelta(days=i))
            for wf in ids
            for i in range((chunk_end - chunk_start).days + 1)
        } - rolled
        _roll(missing, chunk_end)
        count += len(missing)
        chunk_start = chunk_end + timedelta(days=1)
    return count


def metric_days_invalidate(
    *,
    workflow_ids: Iterable[int],
    since: date,
    until: date | None = None,
    now: datetime | None = None,
) -> int:
    """Forget the rolled days ``since..until`` (inclusive) of the workflows, and the
    rolled hours of those still open, after rows were backfilled or corrected there;
    the next read or roll recomputes them. Returns the ``MetricDay`` rows deleted."""
    ids = tuple(workflow_ids)
    now = now or timezone.now()
    first_open = max(since, last_closed_day(now) + timedelta(days=1))
    last_open = min(until or timezone.localdate(now), timezone.localdate(now))
    if first_open <= last_open:
        # The cache first: if it is down this raises before anything changed, and
        # calling again is safe.
        workflows = list(Workflow.objects.filter(pk__in=ids))
        cache.delete_many(_open_keys_of_days(workflows, first_open, last_open))
    qs = MetricDay.objects.filter(workflow__in=ids, day__gte=since)
    if until is not None:
        qs = qs.filter(day__lte=until)
    return qs.delete()[0]


# --- Reading the rollups ------------------------------------------------------------------


def _total(rows: Iterable[MetricDay], attr: str):
    values = [getattr(r, attr) for r in rows]
    return sum(values, ZERO) if attr in ("model_usd", "tool_usd") else sum(values)


def _counter(rows: Iterable[MetricDay], attr: str) -> dict[str, int]:
    total: dict[str, int] = {}
    for r in rows:
        for key, n in getattr(r, attr).items():
            total[key] = total.get(key, 0) + n
    return total


def _by_count(counts: dict[str, int]) -> dict[str, int]:
    """Largest first, then by name (the order the live queries give)."""
    return dict(sorted(((k, n) for k, n in counts.items() if n), key=lambda kv: (-kv[1], kv[0])))


def _agreement(accepted: int, edited: int, rejected: int) -> Agreement:
    low, high = wilson_interval(accepted, accepted + edited + rejected)
    return Agreement(accepted, edited, rejected, low, high)


def _mean(total: int | Decimal, n: int) -> float | None:
    return float(total) / n if n else None


def metrics_from_days(
    rows: list[MetricDay], scope: Scope, workflow: Workflow | None = None
) -> WorkflowMetrics:
    """``workflow_metrics`` from rolled rows (window from ``scope.since``'s day to now)."""
    target = workflow.cost_target_usd if workflow is not None else None
    budget = float(workflow.tool_error_budget) if workflow is not None else None
    t = {attr: _total(rows, attr) for attr in _SUMMED}
    since_day = timezone.localdate(scope.since).isoformat()
    later = sum(n for day, n in _counter(rows, "escalated_later").items() if day >= since_day)
    fields: dict[str, list[int]] = {}
    for r in rows:
        for name, (n, changed) in r.fields.items():
            total = fields.setdefault(name, [0, 0])
            total[0] += n
            total[1] += changed
    by_tool: dict[str, list[int]] = {}
    for r in rows:
        if r.tool_calls:
            calls = by_tool.setdefault(r.tool, [0, 0])
            calls[0] += r.tool_calls
            calls[1] += r.tool_errors
    return WorkflowMetrics(
        scope=scope,
        resolved=t["resolved"],
        succeeded=t["succeeded"],
        agreement=_agreement(t["accepted"], t["edited"], t["rejected"]),
        field_agreement=[
            FieldAgreement(field=name, edited_decisions=n, changed=changed)
            for name, (n, changed) in sorted(fields.items(), key=lambda kv: (-kv[1][1], kv[0]))
        ],
        reject_reasons=_by_count(_counter(rows, "reject_reasons")),
        critical_rejections=t["critical"],
        cost=Cost(
            model_usd=t["model_usd"],
            tool_usd=t["tool_usd"],
            reviewer_seconds=t["reviewer_seconds"],
            outcomes=t["succeeded"],
            target_usd=target,
        ),
        received=t["received"],
        escalated_items=t["escalated_same_day"] + later,
        escalations=t["escalations"],
        runs=t["runs"],
        mean_tool_calls=_mean(t["run_tool_calls"], t["runs"]),
        retried_runs=t["retried_runs"],
        time_to_safe_fail=(
            timedelta(microseconds=t["safe_fail_us"] / t["safe_fail_n"])
            if t["safe_fail_n"]
            else None
        ),
        tool_errors=[
            ToolErrors(tool=tool, calls=calls, errors=errors, budget=budget)
            for tool, (calls, errors) in sorted(by_tool.items())
        ],
        budget_trips=_by_count(_counter(rows, "budget_trips")),
        decisions=t["decisions"],
        reviewer_seconds_per_decision=_mean(t["reviewer_seconds"], t["decisions"]),
        resolutions=t["resolutions"],
        minutes_saved_per_escalation=_mean(t["minutes_saved"], t["resolutions"]),
        mean_packet_rating=_mean(t["rating_sum"], t["rating_n"]),
    )


def days_from_rows(rows: list[MetricDay], *, since: datetime, now: datetime) -> list[Day]:
    """``daily_rollup`` from rolled rows."""
    days = {d: Day(day=d) for d in days_between(since, now)}
    for r in rows:
        day = days.get(r.day)
        if day is None:
            continue
        day.accepted += r.accepted
        day.edited += r.edited
        day.rejected += r.rejected
        day.reviewer_seconds += r.reviewer_seconds
        day.model_usd += r.model_usd
        day.tool_usd += r.tool_usd
        day.outcomes += r.succeeded
        day.received += r.received
        day.escalations += r.escalations
        day.tool_calls += r.tool_calls
        day.tool_errors += r.tool_errors
    for day in days.values():
        day.interval = wilson_interval(day.accepted, day.decided)
    return list(days.values())


def agreement_by_tool_from_rows(rows: list[MetricDay]) -> dict[str, Agreement]:
    """``agreement_by_tool`` from rolled rows."""
    by_tool: dict[str, list[int]] = {}
    for r in rows:
        if r.decisions:
            counts = by_tool.setdefault(r.tool, [0, 0, 0])
            counts[0] += r.accepted
            counts[1] += r.edited
            counts[2] += r.rejected
    return {tool: _agreement(*counts) for tool, counts in sorted(by_tool.items())}


@dataclass(frozen=True)
class Dashboard:
    metrics: WorkflowMetrics
    daily: list[Day]
    agreement_by_tool: dict[str, Agreement]


def dashboard_metrics(workflow: Workflow, *, since: datetime, now: datetime) -> Dashboard:
    """A workflow's dashboard from its rollups and today's live slice: the same
    numbers as ``workflow_metrics``, ``daily_rollup`` and ``agreement_by_tool``
    over ``since``..now, in a number of queries that does not grow with the data."""
    scope = Scope.for_workflow(workflow, since=since)
    rows = metric_days_read((workflow,), since=since, now=now)
    return Dashboard(
        metrics=metrics_from_days(rows, scope, workflow),
        daily=days_from_rows(rows, since=since, now=now),
        agreement_by_tool=agreement_by_tool_from_rows(rows),
    )


@dataclass
class SpendDay:
    """What the ops overview reads of a workflow's day: spend, reviewer time,
    successful outcomes and budget trips (summed over tools)."""

    workflow_id: int
    day: date
    model_usd: Decimal = ZERO
    tool_usd: Decimal = ZERO
    reviewer_seconds: int = 0
    succeeded: int = 0
    budget_trips: int = 0


def spend_days_read(
    workflows: Iterable[Workflow], *, since: datetime, now: datetime
) -> list[SpendDay]:
    """``metric_days_read`` cut to what the ops overview shows: the closed days summed
    over tools in SQL (no row per tool to load), the open days' live slice computed
    for those columns only (three queries instead of eight)."""
    workflows = list(workflows)
    ids = tuple(w.pk for w in workflows)
    first = timezone.localdate(since)
    last = last_closed_day(now)
    days: list[SpendDay] = []
    rows: list[MetricDay] = []
    if first <= last:
        stored = MetricDay.objects.filter(workflow__in=ids, day__gte=first, day__lte=last)
        rolled: set[tuple[int, date]] = set()
        by_day: dict[tuple[int, date], SpendDay] = {}
        for wf, day, model, tool, seconds, ok, whole in (
            stored.values("workflow", "day")
            .annotate(
                m=Sum("model_usd"),
                t=Sum("tool_usd"),
                s=Sum("reviewer_seconds"),
                ok=Sum("succeeded"),
                whole=Count("pk", filter=Q(tool="")),
            )
            .order_by()
            .values_list("workflow", "day", "m", "t", "s", "ok", "whole")
        ):
            by_day[wf, day] = SpendDay(wf, day, model, tool, seconds, ok)
            if whole:
                rolled.add((wf, day))
        # Budget trips are a JSON counter on the workflow's row: only days with any.
        for wf, day, trips in (
            stored.filter(tool="")
            .exclude(budget_trips={})
            .values_list("workflow", "day", "budget_trips")
        ):
            by_day[wf, day].budget_trips = sum(trips.values())
        days = list(by_day.values())
        rows = _roll(_missing_days(ids, first, last, rolled), last)
    rows += _open_rows(workflows, first=first, now=now, parts=OPS_PARTS)
    days += [
        SpendDay(
            r.workflow_id,
            r.day,
            r.model_usd,
            r.tool_usd,
            r.reviewer_seconds,
            r.succeeded,
            sum(r.budget_trips.values()),
        )
        for r in rows
    ]
    return days


def ops_overview_rolled(
    workflows: QuerySet[Workflow] | Iterable[Workflow], *, since: datetime, now: datetime
) -> tuple[list[WorkflowSpend], list[Day]]:
    """``ops_overview`` and the spend per day across the workflows, from rollups
    (``Day`` rows with their model and tool cost only: what the overview charts)."""
    workflows = list(workflows)
    ids = tuple(w.pk for w in workflows)
    if not ids:
        return [], []
    today, week = timezone.localdate(start_of_today(now)), timezone.localdate(start_of_week(now))
    since_day = timezone.localdate(since)
    rows = spend_days_read(workflows, since=min(since, start_of_week(now)), now=now)
    per: dict[int, dict[str, object]] = {
        wf: {"today": ZERO, "week": ZERO, "model": ZERO, "tool": ZERO, "s": 0, "ok": 0, "trips": 0}
        for wf in ids
    }
    daily = {d: Day(day=d) for d in days_between(since, now)}
    for r in rows:
        acc = per[r.workflow_id]
        spend = r.model_usd + r.tool_usd
        if r.day >= today:
            acc["today"] += spend
        if r.day >= week:
            acc["week"] += spend
        if r.day >= since_day:
            acc["model"] += r.model_usd
            acc["tool"] += r.tool_usd
            acc["s"] += r.reviewer_seconds
            acc["ok"] += r.succeeded
            acc["trips"] += r.budget_trips
            day = daily.get(r.day)
            if day is not None:  # the spend chart: model and tool cost per day
                day.model_usd += r.model_usd
                day.tool_usd += r.tool_usd
    pending, open_escalations = _queue_state(ids)
    result = [
        WorkflowSpend(
            workflow=workflow,
            today_usd=per[workflow.pk]["today"],
            week_usd=per[workflow.pk]["week"],
            cost=Cost(
                model_usd=per[workflow.pk]["model"],
                tool_usd=per[workflow.pk]["tool"],
                reviewer_seconds=per[workflow.pk]["s"],
                outcomes=per[workflow.pk]["ok"],
                target_usd=workflow.cost_target_usd,
            ),
            budget_trips=per[workflow.pk]["trips"],
            pending=pending.get(workflow.pk, {}).get("n", 0),
            escalations=open_escalations.get(workflow.pk, 0),
            oldest_pending_at=pending.get(workflow.pk, {}).get("oldest"),
        )
        for workflow in workflows
    ]
    return result, list(daily.values())


def _queue_state(ids: tuple[int, ...]) -> tuple[dict[int, dict], dict[int, int]]:
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
