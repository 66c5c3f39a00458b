"""Per-run budgets and loop detection. Tripping one stops the run and escalates."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import F, Sum
from django.utils import timezone

from agents.models import Run
from agents.tools.base import canonical_json

if TYPE_CHECKING:
    from governance.models import Workflow

StopReason = Run.StopReason

ERR_TOOL_CALLS = "Tool-call budget of {limit} reached."
ERR_TOKENS = "Token budget of {limit} exceeded ({used} used)."
ERR_SECONDS = "Wall-clock budget of {limit}s exceeded ({used:.1f}s)."
ERR_COST = "Cost budget of ${limit} exceeded (${used})."
ERR_LOOP = "Loop detected: {tool} called {count} times with the same arguments."
ERR_DAILY = (
    "The workflow's daily budget of ${limit} is spent (${used} today, this run included); "
    "the run stopped before its next model call."
)


def start_of_today(now: datetime | None = None) -> datetime:
    """Local midnight: the day the console's spend dashboard uses (evidence.metrics)."""
    now = timezone.localtime(now or timezone.now())
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def workflow_spend_today(*, workflow: Workflow, exclude_run_id: int | None = None) -> Decimal:
    """Model and tool spend of the workflow's runs created today, as the console's spend
    dashboard counts it. A running run's own spend is in memory (its row is written when
    it finishes): the caller excludes it and adds it."""
    runs = Run.objects.filter(work_item__workflow=workflow, created_at__gte=start_of_today())
    if exclude_run_id is not None:
        runs = runs.exclude(pk=exclude_run_id)
    total = runs.aggregate(total=Sum(F("cost_usd") + F("tool_cost_usd")))["total"]
    return Decimal(total or 0)


class BudgetTripped(Exception):  # a trip, not an error
    def __init__(self, stop_reason: str, detail: str, budget: str) -> None:
        super().__init__(detail)
        self.stop_reason = stop_reason
        self.detail = detail
        self.budget = budget


@dataclass
class RunBudget:
    max_tool_calls: int
    max_tokens: int
    max_seconds: float
    max_cost: Decimal
    loop_threshold: int
    # The workflow's daily budget (None: not enforced) and what its other runs spent today.
    daily_limit: Decimal | None = None
    spent_today: Decimal = Decimal("0")
    started: float = field(default_factory=time.monotonic)
    tokens: int = 0
    cost: Decimal = Decimal("0")
    tool_calls: int = 0
    calls: Counter = field(default_factory=Counter)

    @classmethod
    def for_workflow(cls, workflow: Workflow) -> RunBudget:
        return cls(
            max_tool_calls=workflow.max_tool_calls,
            max_tokens=workflow.max_tokens,
            max_seconds=float(workflow.max_seconds),
            max_cost=Decimal(workflow.max_cost_usd),
            loop_threshold=max(2, workflow.loop_threshold),
            daily_limit=(
                Decimal(workflow.daily_budget_usd)
                if workflow.daily_budget_usd is not None
                else None
            ),
        )

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def check_clock(self) -> None:
        if self.elapsed > self.max_seconds:
            raise BudgetTripped(
                StopReason.BUDGET_SECONDS,
                ERR_SECONDS.format(limit=int(self.max_seconds), used=self.elapsed),
                f"max_seconds={int(self.max_seconds)}",
            )

    def check_daily(self, *, spent_elsewhere: Decimal | None = None) -> None:
        """Stop before a model call once the workflow's spend today (its other runs'
        plus this run's) has reached its daily budget: the call would exceed it."""
        if spent_elsewhere is not None:
            self.spent_today = spent_elsewhere
        if self.daily_limit is None:
            return
        used = self.spent_today + self.cost
        if used >= self.daily_limit:
            raise BudgetTripped(
                StopReason.BUDGET_DAILY,
                ERR_DAILY.format(limit=self.daily_limit, used=used.quantize(Decimal("0.000001"))),
                f"daily_budget_usd={self.daily_limit}",
            )

    def charge_model(self, *, tokens: int, cost: Decimal) -> None:
        self.tokens += tokens
        self.cost += cost
        if self.tokens > self.max_tokens:
            raise BudgetTripped(
                StopReason.BUDGET_TOKENS,
                ERR_TOKENS.format(limit=self.max_tokens, used=self.tokens),
                f"max_tokens={self.max_tokens}",
            )
        if self.cost > self.max_cost:
            raise BudgetTripped(
                StopReason.BUDGET_COST,
                ERR_COST.format(limit=self.max_cost, used=self.cost.quantize(Decimal("0.000001"))),
                f"max_cost_usd={self.max_cost}",
            )
        self.check_clock()

    def charge_tool_call(self, *, name: str, arguments: Any) -> None:
        """Count a call before it runs; the same call N times is a loop."""
        self.tool_calls += 1
        signature = f"{name}:{canonical_json(arguments)}"
        self.calls[signature] += 1
        if self.calls[signature] >= self.loop_threshold:
            raise BudgetTripped(
                StopReason.LOOP,
                ERR_LOOP.format(tool=name, count=self.calls[signature]),
                f"loop_threshold={self.loop_threshold}",
            )
        if self.tool_calls > self.max_tool_calls:
            raise BudgetTripped(
                StopReason.BUDGET_TOOL_CALLS,
                ERR_TOOL_CALLS.format(limit=self.max_tool_calls),
                f"max_tool_calls={self.max_tool_calls}",
            )
        self.check_clock()

    def snapshot(self) -> dict[str, Any]:
        return {
            "tool_calls": self.tool_calls,
            "max_tool_calls": self.max_tool_calls,
            "tokens": self.tokens,
            "max_tokens": self.max_tokens,
            "cost_usd": str(self.cost),
            "max_cost_usd": str(self.max_cost),
            "seconds": round(self.elapsed, 3),
            "max_seconds": self.max_seconds,
            "loop_threshold": self.loop_threshold,
            "daily_budget_usd": str(self.daily_limit) if self.daily_limit is not None else None,
            "spent_today_usd": str(self.spent_today + self.cost),
        }
