"""Each metric, defined once.

A metric is written here in one piece: the rows it counts (a row set from
``rows``), its counts as SQL aggregate expressions (named as the fields of its
result and the ``MetricDay`` columns that keep them), and its formula (the result
type: a rate, its Wilson interval, cost per outcome, an error budget). Every path
goes through these: the raw-row functions below (the gate, the breaker, the
evidence pack, the API), ``live`` (a scope's metrics, per tool, per day),
``rollups`` (which groups the same counts by day and tool), ``rolled`` (which sums
them back and applies the same formulas) and the Prometheus scrape.

Decisions count by their verdict, whatever their kind: a review before action, a
report of what the human did in shadow mode, and a post-hoc sample of an
automatic action each say whether the agent's action was right. Samples are also
their own metric, sampled agreement, which the circuit breaker watches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import (
    Avg,
    Count,
    DurationField,
    Expression,
    ExpressionWrapper,
    F,
    Min,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import Coalesce, TruncDate

from agents.models import Escalation, Proposal, Run
from evidence.metrics.rows import (
    decisions_rows,
    escalated_filter,
    escalations_rows,
    outcomes_rows,
    runs_rows,
    tool_steps_rows,
)
from evidence.metrics.scope import Scope
from evidence.metrics.stats import WilsonRate, pct, ratio
from reviews.models import CRITICAL_REJECT_REASONS, Decision

ZERO = Decimal("0")
SECONDS_PER_HOUR = Decimal("3600")


# --- Agreement: accepted / (accepted + edited + rejected) ----------------------

# A decision's verdict -> the count it adds to (a field of Agreement and MetricDay).
VERDICT_COUNT: dict[str, str] = {
    Decision.Verdict.ACCEPT: "accepted",
    Decision.Verdict.EDIT: "edited",
    Decision.Verdict.REJECT: "rejected",
}


def agreement_counts() -> dict[str, Expression]:
    """Agreement's counts as aggregate expressions, named as Agreement's fields."""
    return {
        count: Count("pk", filter=Q(verdict=verdict)) for verdict, count in VERDICT_COUNT.items()
    }


@dataclass(frozen=True)
class Agreement(WilsonRate):
    """Agreement over some decisions: an edit is a disagreement. The rate comes
    with its Wilson 95% interval (the whole [0, 1] when nothing was decided)."""

    accepted: int = 0
    edited: int = 0
    rejected: int = 0

    @classmethod
    def from_counts(cls, counts: Mapping[str, Any]) -> Agreement:
        """From a row carrying ``agreement_counts()`` (an aggregate or a grouped row)."""
        return cls(**{count: counts[count] or 0 for count in VERDICT_COUNT.values()})

    @property
    def n(self) -> int:  # type: ignore[override]
        return self.accepted + self.edited + self.rejected

    @property
    def successes(self) -> int:  # type: ignore[override]
        return self.accepted


def agreement_of(decisions: QuerySet[Decision]) -> Agreement:
    """Agreement over any set of decisions, in one aggregate query."""
    return Agreement.from_counts(decisions.aggregate(**agreement_counts()))


def agreement_for(scope: Scope) -> Agreement:
    return agreement_of(decisions_rows(scope))


# --- Sampled agreement: agreement over post-hoc samples of automatic actions ----

SAMPLED = Q(kind=Decision.Kind.SAMPLE)


def sampled_agreement_of(decisions: QuerySet[Decision]) -> Agreement:
    return agreement_of(decisions.filter(SAMPLED))


def sampled_agreement_last(*, workflow_id: int, tool: str, last: int) -> Agreement:
    """Sampled agreement over a tool's last ``last`` samples (the breaker's window)."""
    recent = (
        Decision.objects.filter(SAMPLED, proposal__workflow_id=workflow_id, proposal__tool=tool)
        .order_by("-created_at", "-pk")
        .values("pk")[:last]
    )
    return agreement_of(Decision.objects.filter(pk__in=recent))


# --- Critical disagreements: rejections for a critical reason ------------------

CRITICAL = Q(verdict=Decision.Verdict.REJECT, reason__in=CRITICAL_REJECT_REASONS)


def is_critical(verdict: str, reason: str) -> bool:
    """``CRITICAL`` for a row already grouped by verdict and reason."""
    return verdict == Decision.Verdict.REJECT and reason in CRITICAL_REJECT_REASONS


def critical_in_last(*, workflow_id: int, tool: str = "", last: int) -> int:
    """Critical disagreements among the workflow's (or tool's) last ``last`` decisions."""
    decisions = Decision.objects.filter(proposal__workflow_id=workflow_id)
    if tool:
        decisions = decisions.filter(proposal__tool=tool)
    recent = decisions.order_by("-created_at", "-pk").values("pk")[:last]
    return Decision.objects.filter(CRITICAL, pk__in=recent).count()


def reject_reasons_for(scope: Scope) -> dict[str, int]:
    return dict(
        decisions_rows(scope)
        .filter(verdict=Decision.Verdict.REJECT)
        .values("reason")
        .annotate(n=Count("pk"))
        .order_by("-n", "reason")
        .values_list("reason", "n")
    )


# --- Field-level agreement (edits only) ------------------------------------------


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


# (workflow id, day, proposal tool, field, edited decisions naming it, of which changed it)
FieldEditCount = tuple[int, date, str, str, int, int]


def field_edit_counts(decisions: QuerySet[Decision]) -> list[FieldEditCount]:
    """For the edited ones among ``decisions``: per workflow, day (of the decision,
    in the current time zone), proposal tool and argument, how many named the
    argument (the proposal carried it or the edit touched it) and how many changed
    it (the diff names it).

    The keys of two JSON objects per decision are counted here, over rows streamed
    from the database, not in SQL: a statement expanding them there
    (``jsonb_object_keys``, grouped) was slower at every size measured among a
    million decisions (30 days, 78,000 edits: 2.2-3.1 s against about 1 s; one
    day: 200 ms against 40 ms; the open day's last hour: 4-30 ms against 3 ms).
    Streamed in chunks, the rows never sit in memory together."""
    counts: dict[tuple[int, date, str, str], list[int]] = {}
    rows = (
        decisions.filter(verdict=Decision.Verdict.EDIT)
        .annotate(day=TruncDate("created_at"))
        .values_list("proposal__workflow", "day", "proposal__tool", "proposal__arguments", "diff")
        .order_by()
    )
    for workflow_id, day, tool, arguments, diff in rows.iterator(chunk_size=2000):
        named = arguments.keys() if isinstance(arguments, dict) else ()
        changed = diff.keys() if isinstance(diff, dict) else ()
        for name in {*named, *changed}:
            count = counts.setdefault((workflow_id, day, tool, name), [0, 0])
            count[0] += 1
            count[1] += name in changed
    return [(*key, named_n, changed_n) for key, (named_n, changed_n) in counts.items()]


def field_agreement_for(scope: Scope) -> list[FieldAgreement]:
    """For edited decisions: per argument, how often the reviewer changed it.

    A decision counts for a field when its proposal carried the field or its
    edit touched it; it counts as changed when the diff names the field. The
    counts come per workflow, day and tool (as the rollups keep them) and are
    summed here: each decision falls in exactly one of those groups.
    """
    totals: dict[str, list[int]] = {}
    for _wf, _day, _tool, name, n, changed in field_edit_counts(decisions_rows(scope)):
        total = totals.setdefault(name, [0, 0])
        total[0] += n
        total[1] += changed
    return field_agreements(totals)


def field_agreements(totals: Mapping[str, Sequence[int]]) -> list[FieldAgreement]:
    """From {field: (edited decisions naming it, of which changed it)}, the most
    changed first."""
    return [
        FieldAgreement(field=name, edited_decisions=n, changed=changed)
        for name, (n, changed) in sorted(totals.items(), key=lambda kv: (-kv[1][1], kv[0]))
    ]


# --- Cost per successful outcome ---------------------------------------------------


def reviewer_hourly_rate() -> Decimal:
    return Decimal(str(settings.TENURE_REVIEWER_HOURLY_RATE))


def reviewer_cost(seconds: int) -> Decimal:
    return Decimal(seconds) * reviewer_hourly_rate() / SECONDS_PER_HOUR


def cost_per_outcome(
    *, model_cost: Decimal, tool_cost: Decimal, reviewer_seconds: int, outcomes: int
) -> Decimal | None:
    """(model cost + tool cost + reviewer time x hourly rate) / successful outcomes."""
    total = model_cost + tool_cost + reviewer_cost(reviewer_seconds)
    if not outcomes:
        return None
    return total / outcomes


def run_cost_sums(within: Q | None = None) -> dict[str, Expression]:
    """Model and tool cost of runs (of those ``within`` the condition), as Cost's fields."""
    return {
        "model_usd": Coalesce(Sum("cost_usd", filter=within), ZERO),
        "tool_usd": Coalesce(Sum("tool_cost_usd", filter=within), ZERO),
    }


def reviewer_seconds_sum() -> Expression:
    return Coalesce(Sum("seconds_spent"), 0)


@dataclass(frozen=True)
class Cost:
    model_usd: Decimal
    tool_usd: Decimal
    reviewer_seconds: int
    outcomes: int  # successful outcomes
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


def cost_for(scope: Scope, target_usd: Decimal | None = None) -> Cost:
    runs = runs_rows(scope).aggregate(**run_cost_sums())
    seconds = decisions_rows(scope).aggregate(s=reviewer_seconds_sum())["s"]
    outcomes = outcomes_rows(scope).aggregate(**outcome_counts())["succeeded"]
    return Cost(**runs, reviewer_seconds=seconds, outcomes=outcomes, target_usd=target_usd)


# --- Task success: succeeded / resolved ---------------------------------------------

SUCCEEDED = Q(succeeded=True)


def outcome_counts() -> dict[str, Expression]:
    return {"resolved": Count("pk"), "succeeded": Count("pk", filter=SUCCEEDED)}


# --- Escalation rate: received items with an escalation / received items ----------


def received_counts() -> dict[str, Expression]:
    return {"received": Count("pk"), "escalated_items": Count("pk", filter=escalated_filter())}


# --- Runs: retry rate, tool calls per run, budget trips ------------------------------

RETRIED = Q(retries__gt=0)
BUDGET_TRIP = Q(stop_reason__in=Run.BUDGET_REASONS)


def budget_trips_for(scope: Scope) -> dict[str, int]:
    return dict(
        runs_rows(scope)
        .filter(BUDGET_TRIP)
        .values("stop_reason")
        .annotate(n=Count("pk"))
        .order_by("-n", "stop_reason")
        .values_list("stop_reason", "n")
    )


# --- Tool error rate, against the workflow's error budget ------------------------------

TOOL_ERROR = ~Q(error="")


def tool_call_counts() -> dict[str, Expression]:
    """Tool-call steps and those with an error, as ToolErrors' fields."""
    return {"calls": Count("pk"), "errors": Count("pk", filter=TOOL_ERROR)}


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


def tool_errors_for(scope: Scope, budget: float | None = None) -> list[ToolErrors]:
    rows = tool_steps_rows(scope).values("name").annotate(**tool_call_counts()).order_by("name")
    return [
        ToolErrors(tool=row["name"], calls=row["calls"], errors=row["errors"], budget=budget)
        for row in rows
    ]


# --- Time to safe fail: run start -> its escalation -------------------------------------

WITH_RUN = Q(run__started_at__isnull=False)


def safe_fail_duration() -> ExpressionWrapper:
    return ExpressionWrapper(F("created_at") - F("run__started_at"), output_field=DurationField())


def time_to_safe_fail_for(scope: Scope) -> timedelta | None:
    return (
        escalations_rows(scope).filter(WITH_RUN).aggregate(mean=Avg(safe_fail_duration()))["mean"]
    )


# --- The review backlog: current state, not history ---------------------------------------


@dataclass(frozen=True)
class Backlog:
    pending: int = 0
    oldest_pending_at: datetime | None = None
    open_escalations: int = 0


def backlog_for(workflow_ids: tuple[int, ...] | None = None) -> dict[int, Backlog]:
    """Proposals waiting for review (and the oldest) and open escalations per
    workflow (every workflow when ``workflow_ids`` is None): two grouped queries."""
    proposals = Proposal.objects.filter(status=Proposal.Status.PENDING)
    escalations = Escalation.objects.filter(status=Escalation.Status.OPEN)
    if workflow_ids is not None:
        proposals = proposals.filter(workflow__in=workflow_ids)
        escalations = escalations.filter(workflow__in=workflow_ids)
    pending = {
        row["workflow"]: row
        for row in proposals.values("workflow")
        .annotate(n=Count("pk"), oldest=Min("created_at"))
        .order_by()
    }
    open_escalations = dict(
        escalations.values("workflow")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("workflow", "n")
    )
    return {
        wf: Backlog(
            pending=pending.get(wf, {}).get("n", 0),
            oldest_pending_at=pending.get(wf, {}).get("oldest"),
            open_escalations=open_escalations.get(wf, 0),
        )
        for wf in {*pending, *open_escalations, *(workflow_ids or ())}
    }
