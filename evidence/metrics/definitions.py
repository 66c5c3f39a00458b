"""Each metric, defined once: its result type with its formula, and its computation
from raw rows over any window (the gate, the breaker, the evidence pack and the API
use these; the rollups sum the same counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import Coalesce

from agents.models import Proposal, Run
from evidence.metrics.rows import (
    decisions_rows,
    escalations_rows,
    outcomes_rows,
    runs_rows,
    tool_steps_rows,
)
from evidence.metrics.scope import Scope
from evidence.metrics.stats import pct, ratio, wilson_interval
from reviews.models import Decision

ZERO = Decimal("0")


SECONDS_PER_HOUR = Decimal("3600")


def reviewer_hourly_rate() -> Decimal:
    return Decimal(str(settings.TENURE_REVIEWER_HOURLY_RATE))


def cost_per_outcome(
    *, model_cost: Decimal, tool_cost: Decimal, reviewer_seconds: int, outcomes: int
) -> Decimal | None:
    total = model_cost + tool_cost + reviewer_cost(reviewer_seconds)
    if not outcomes:
        return None
    return total / outcomes


def reviewer_cost(seconds: int) -> Decimal:
    return Decimal(seconds) * reviewer_hourly_rate() / SECONDS_PER_HOUR


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
