"""The item-level comparison: the agent's plan for a work item against what the
human really did, defined once.

Each action is one of four things:

- *exact*: proposed, and the human accepted it as it was (a decision ``accept``);
- *edited*: proposed, and the human did it after changing it (``edit``);
- *extra*: proposed, and the human did not do it (``reject``);
- *missed*: done by the human, never proposed (a ``HumanAction``).

From these, over any scope (and per tool, per day), each with its Wilson 95%
interval:

- action precision = exact / (exact + edited + extra): of what the agent proposed,
  how much was right as it stood (the agreement of the decisions, the same number);
- action recall = exact / (exact + edited + missed): of what the human did, how
  much the agent had proposed exactly;
- item agreement = items whose whole plan was right / items whose account is
  complete (an ``ItemOutcome``): every proposal accepted as it was and nothing
  missed, or the agent proposed nothing and the human did nothing ("both did
  nothing", which agrees);
- coverage = judged / settled proposals: a proposal is settled once it no longer
  waits for a human; it is judged when it has a decision. A settled proposal
  without a verdict is counted under its reason ("not judged: cancelled", "not
  judged: executed on its own, not sampled", ...), never dropped.

Windows: decisions by when they were made, missed actions and item outcomes by
when the human acted (the original time for imported history), proposals by when
they were made. Imported history is counted and shown apart ("of which
imported"); a scope with ``with_imported=False`` (the gate, unless the workflow
counts imported evidence) leaves it out.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.core.cache import cache
from django.db.models import (
    Case,
    Count,
    Exists,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    When,
)
from django.db.models.functions import TruncDate

from agents.models import Proposal
from evidence.metrics.rows import decisions_rows
from evidence.metrics.scope import Scope
from evidence.metrics.stats import WilsonRate
from reviews.models import Decision, HumanAction, ItemOutcome

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Proportion(WilsonRate):
    """successes / n with its Wilson 95% interval (the whole [0, 1] when n is 0)."""

    successes: int
    n: int

    def as_json(self) -> dict[str, Any]:
        return {
            "successes": self.successes,
            "n": self.n,
            "rate": self.rate,
            "wilson_low": self.low,
            "wilson_high": self.high,
        }


@dataclass(frozen=True)
class ActionCounts:
    """The four kinds of action, and how many of each came from imported history."""

    exact: int = 0
    edited: int = 0
    extra: int = 0
    missed: int = 0
    imported: int = 0

    def __add__(self, other: ActionCounts) -> ActionCounts:
        return ActionCounts(
            exact=self.exact + other.exact,
            edited=self.edited + other.edited,
            extra=self.extra + other.extra,
            missed=self.missed + other.missed,
            imported=self.imported + other.imported,
        )

    @property
    def precision(self) -> Proportion:
        return Proportion(self.exact, self.exact + self.edited + self.extra)

    @property
    def recall(self) -> Proportion:
        return Proportion(self.exact, self.exact + self.edited + self.missed)

    def as_json(self) -> dict[str, Any]:
        return {
            "exact": self.exact,
            "edited": self.edited,
            "extra": self.extra,
            "missed": self.missed,
            "imported": self.imported,
            "precision": self.precision.as_json(),
            "recall": self.recall.as_json(),
        }


@dataclass(frozen=True)
class ItemCounts:
    """Items whose account is complete: how many, how many whole plans were right
    (of which both did nothing), and how many came from imported history."""

    items: int = 0
    agreed: int = 0
    both_nothing: int = 0
    imported: int = 0

    @property
    def agreement(self) -> Proportion:
        return Proportion(self.agreed, self.items)

    def as_json(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "agreed": self.agreed,
            "both_did_nothing": self.both_nothing,
            "imported": self.imported,
            "agreement": self.agreement.as_json(),
        }


# A settled proposal meant for a human verdict but without one -> the reason it is
# counted under.
NOT_JUDGED_REASONS: dict[str, str] = {
    Proposal.Status.CANCELLED: "cancelled",
    Proposal.Status.EXECUTED: "executed without a verdict",
    Proposal.Status.EXECUTION_FAILED: "execution failed before a verdict",
}
OTHER_REASON = "settled without a verdict"


@dataclass(frozen=True)
class Coverage:
    """Judged / settled proposals; the rest by the reason they were not judged.
    Outside the ratio: those still waiting for a human, and actions that executed on
    their own and were not picked for a post-hoc sample (never meant for a verdict;
    shown, not hidden)."""

    judged: int = 0
    not_judged: dict[str, int] = field(default_factory=dict)
    waiting: int = 0
    unsampled: int = 0

    @property
    def settled(self) -> int:
        return self.judged + sum(self.not_judged.values())

    @property
    def proposed(self) -> int:
        return self.settled + self.waiting + self.unsampled

    @property
    def share(self) -> Proportion:
        return Proportion(self.judged, self.settled)

    def as_json(self) -> dict[str, Any]:
        return {
            "proposed": self.proposed,
            "waiting": self.waiting,
            "settled": self.settled,
            "judged": self.judged,
            "not_judged": dict(self.not_judged),
            "auto_executed_unsampled": self.unsampled,
            "coverage": self.share.rate,
        }


@dataclass(frozen=True)
class ItemComparison:
    """The comparison over a scope: overall, per tool, per day."""

    actions: ActionCounts
    items: ItemCounts
    coverage: Coverage
    by_tool: dict[str, ActionCounts]
    items_by_tool: dict[str, ItemCounts]
    by_day: dict[date, ActionCounts]
    items_by_day: dict[date, ItemCounts]

    @property
    def tool_rows(self) -> list[tuple[str, ActionCounts, ItemCounts | None]]:
        """(tool, its actions, its items) by tool name, for the tables."""
        return [(t, a, self.items_by_tool.get(t)) for t, a in sorted(self.by_tool.items())]

    @property
    def day_rows(self) -> list[tuple[date, ActionCounts, ItemCounts | None]]:
        """(day, its actions, its items), the newest first."""
        days = sorted({*self.by_day, *self.items_by_day}, reverse=True)
        return [(d, self.by_day.get(d, ActionCounts()), self.items_by_day.get(d)) for d in days]

    def as_json(self) -> dict[str, Any]:
        return {
            **self.actions.as_json(),
            "item_agreement": self.items.as_json(),
            "coverage": self.coverage.as_json(),
            "by_tool": {
                tool: {
                    **counts.as_json(),
                    "item_agreement": self.items_by_tool.get(tool, ItemCounts()).as_json(),
                }
                for tool, counts in sorted(self.by_tool.items())
            },
            "by_day": {
                day.isoformat(): {
                    **counts.as_json(),
                    "item_agreement": self.items_by_day.get(day, ItemCounts()).as_json(),
                }
                for day, counts in sorted(self.by_day.items())
            },
        }


# --- Row sets --------------------------------------------------------------------------


def judged_rows(scope: Scope) -> QuerySet[Decision]:
    """The decisions that judge the agent's actions (the precision side): the same
    rows as agreement, so precision is agreement."""
    return decisions_rows(scope)


def missed_rows(scope: Scope) -> QuerySet[HumanAction]:
    qs = HumanAction.objects.filter(scope.window("occurred_at"), workflow__in=scope.workflow_ids)
    if scope.tool:
        qs = qs.filter(tool=scope.tool)
    if not scope.with_imported:
        qs = qs.filter(imported=False)
    return qs


def item_outcome_rows(scope: Scope) -> QuerySet[ItemOutcome]:
    qs = ItemOutcome.objects.filter(scope.window("occurred_at"), workflow__in=scope.workflow_ids)
    if scope.tool:
        item = OuterRef("work_item_id")
        qs = qs.filter(
            Exists(Proposal.objects.filter(work_item=item, tool=scope.tool))
            | Exists(HumanAction.objects.filter(work_item=item, tool=scope.tool))
        )
    if not scope.with_imported:
        qs = qs.filter(imported=False)
    return qs


def proposed_rows(scope: Scope) -> QuerySet[Proposal]:
    qs = Proposal.objects.filter(scope.window("created_at"), workflow__in=scope.workflow_ids)
    if scope.tool:
        qs = qs.filter(tool=scope.tool)
    if not scope.with_imported:
        qs = qs.exclude(decision__kind=Decision.Kind.IMPORTED)
    return qs


# --- Counts ------------------------------------------------------------------------------


def _one(n: int | None) -> int:
    return n or 0


def _action_counts() -> dict[str, Any]:
    return {
        "exact": Count("pk", filter=Q(verdict=Decision.Verdict.ACCEPT)),
        "edited": Count("pk", filter=Q(verdict=Decision.Verdict.EDIT)),
        "extra": Count("pk", filter=Q(verdict=Decision.Verdict.REJECT)),
        "imported": Count("pk", filter=Q(kind=Decision.Kind.IMPORTED)),
    }


def _from_decisions(row: dict[str, Any]) -> ActionCounts:
    return ActionCounts(
        exact=_one(row["exact"]),
        edited=_one(row["edited"]),
        extra=_one(row["extra"]),
        imported=_one(row["imported"]),
    )


def _missed_counts() -> dict[str, Any]:
    return {"missed": Count("pk"), "imported": Count("pk", filter=Q(imported=True))}


def _from_missed(row: dict[str, Any]) -> ActionCounts:
    return ActionCounts(missed=_one(row["missed"]), imported=_one(row["imported"]))


def _flag(condition: Q | Exists) -> Sum:
    return Sum(Case(When(condition, then=1), default=0, output_field=IntegerField()))


def _item_counts() -> dict[str, Any]:
    """ItemCounts' fields as aggregates over ItemOutcome rows. An item agrees when
    every proposal of it was accepted as it stood and the human did nothing more;
    with no proposal, only when the human did nothing."""
    item = OuterRef("work_item_id")
    any_proposal = Exists(Proposal.objects.filter(work_item=item))
    not_exact = Exists(
        Proposal.objects.filter(work_item=item).exclude(decision__verdict=Decision.Verdict.ACCEPT)
    )
    missed = Exists(HumanAction.objects.filter(work_item=item))
    whole_plan_right = ~not_exact & ~missed & (any_proposal | Q(did_nothing=True))
    both_nothing = ~any_proposal & ~missed & Q(did_nothing=True)
    return {
        "items": Count("pk"),
        "agreed": _flag(whole_plan_right),
        "both_nothing": _flag(both_nothing),
        "imported": Count("pk", filter=Q(imported=True)),
    }


def _from_items(row: dict[str, Any]) -> ItemCounts:
    return ItemCounts(
        items=_one(row["items"]),
        agreed=_one(row["agreed"]),
        both_nothing=_one(row["both_nothing"]),
        imported=_one(row["imported"]),
    )


def action_counts_for(scope: Scope) -> ActionCounts:
    return _from_decisions(judged_rows(scope).aggregate(**_action_counts())) + _from_missed(
        missed_rows(scope).aggregate(**_missed_counts())
    )


def item_counts_for(scope: Scope) -> ItemCounts:
    return _from_items(item_outcome_rows(scope).aggregate(**_item_counts()))


def coverage_for(scope: Scope) -> Coverage:
    judged = Exists(Decision.objects.filter(proposal=OuterRef("pk")))
    rows = (
        proposed_rows(scope)
        .annotate(judged=judged)
        .values("judged", "status", "auto_executed")
        .annotate(n=Count("pk"))
        .order_by()
    )
    judged_n, waiting_n, unsampled_n = 0, 0, 0
    not_judged: dict[str, int] = defaultdict(int)
    for row in rows:
        if row["judged"]:
            judged_n += row["n"]
        elif row["status"] == Proposal.Status.PENDING:
            waiting_n += row["n"]
        elif row["auto_executed"]:
            unsampled_n += row["n"]
        else:
            not_judged[NOT_JUDGED_REASONS.get(row["status"], OTHER_REASON)] += row["n"]
    return Coverage(
        judged=judged_n, not_judged=dict(not_judged), waiting=waiting_n, unsampled=unsampled_n
    )


def item_comparison_for(scope: Scope) -> ItemComparison:
    """The whole comparison over a scope, per tool and per day: a fixed number of
    grouped queries, plus one item count per tool seen."""
    by_tool: dict[str, ActionCounts] = defaultdict(ActionCounts)
    by_day: dict[date, ActionCounts] = defaultdict(ActionCounts)
    decisions = judged_rows(scope)
    for row in decisions.values("proposal__tool").annotate(**_action_counts()).order_by():
        by_tool[row["proposal__tool"]] += _from_decisions(row)
    for row in (
        decisions.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(**_action_counts())
        .order_by()
    ):
        by_day[row["day"]] += _from_decisions(row)
    missed = missed_rows(scope)
    for row in missed.values("tool").annotate(**_missed_counts()).order_by():
        by_tool[row["tool"]] += _from_missed(row)
    for row in (
        missed.annotate(day=TruncDate("occurred_at"))
        .values("day")
        .annotate(**_missed_counts())
        .order_by()
    ):
        by_day[row["day"]] += _from_missed(row)
    actions = sum(by_tool.values(), ActionCounts())
    outcomes = item_outcome_rows(scope)
    items = _from_items(outcomes.aggregate(**_item_counts()))
    items_by_day = {
        row["day"]: _from_items(row)
        for row in outcomes.annotate(day=TruncDate("occurred_at"))
        .values("day")
        .annotate(**_item_counts())
        .order_by()
    }
    items_by_tool = {
        tool: item_counts_for(scope.with_tool(tool)) for tool in sorted(by_tool) if not scope.tool
    }
    if scope.tool:
        items_by_tool = {scope.tool: items}
    return ItemComparison(
        actions=actions,
        items=items,
        coverage=coverage_for(scope),
        by_tool=dict(by_tool),
        items_by_tool=items_by_tool,
        by_day=dict(by_day),
        items_by_day=items_by_day,
    )


# --- The screens' copy ------------------------------------------------------------------

# How long the dashboard and the workflow page may show a comparison before they
# count again (they also count again as soon as a decision, a missed action, an item
# outcome or a proposal is added).
SCREEN_TTL_SECONDS = 60


def _fingerprint(scope: Scope) -> str:
    """The newest row of each table the comparison reads (cheap index lookups): any
    new one makes a new key."""
    newest = [
        model.objects.filter(**{field: scope.workflow_ids}).aggregate(m=Max("pk"))["m"] or 0
        for model, field in (
            (Decision, "proposal__workflow__in"),
            (HumanAction, "workflow__in"),
            (ItemOutcome, "workflow__in"),
            (Proposal, "workflow__in"),
        )
    ]
    return "-".join(map(str, newest))


def item_comparison_for_screen(scope: Scope) -> ItemComparison:
    """``item_comparison_for``, kept for a minute for the screens that poll and
    reload (the dashboard, the workflow page): the comparison reads raw rows over the
    window (it has no daily rollups yet). The gate, the evidence pack and the API
    always count afresh."""
    key = ":".join(
        (
            "evidence:comparison:v1",
            ",".join(map(str, scope.workflow_ids)),
            scope.since.isoformat(),
            scope.until.isoformat() if scope.until else "",
            scope.tool,
            str(scope.with_imported),
            _fingerprint(scope),
        )
    )
    try:
        found = cache.get(key)
    except Exception:  # noqa: BLE001 - the cache (Redis) is down: count afresh
        logger.warning("item comparison counted afresh: cache unavailable")
        return item_comparison_for(scope)
    if isinstance(found, ItemComparison):
        return found
    comparison = item_comparison_for(scope)
    try:
        cache.set(key, comparison, SCREEN_TTL_SECONDS)
    except Exception:  # noqa: BLE001 - kept next time, when the cache is back
        logger.warning("item comparison not kept: cache unavailable")
    return comparison
