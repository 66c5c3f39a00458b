"""Promotion backtest: "if this tool had been at limited with these caps over the
last N days, which actions would have auto-executed, and how many of those did
humans reject or edit?"

Computed from recorded proposals and their decisions, through the same policy
code the runner uses, so the answer is what the runtime would really have done.
Per-day caps (``daily_count``, ``daily_amount``) are applied in time order.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils import timezone
from pydantic import ValidationError

from agents.models import Proposal
from agents.policy import policy_evaluate
from agents.provenance import auto_execute_decision
from agents.roles import roles_for
from agents.tools import builtin_tool, registry_for
from evidence.metrics import VERDICT_COUNT, Agreement, is_critical
from governance import privacy
from governance.models import AutonomyLevel, ToolGrant, Workflow
from reviews.models import Decision

ERR_UNKNOWN_TOOL = "The workflow has no tool called “{tool}”."
ERR_BAD_CAP = "Cap “{name}” must be a positive number, not “{value}”."
CAP_KEYS = ("amount", "records", "daily_count", "daily_amount")
MAX_PROPOSALS = 20_000  # a backtest is a simulation over a bounded window


@dataclass(frozen=True)
class BacktestAction:
    proposal_id: int
    created_at: datetime
    arguments: dict[str, Any]
    rule: str
    human_verdict: str
    reason: str


@dataclass
class BacktestResult:
    workflow: str
    tool: str
    caps: dict[str, str]
    since: datetime
    until: datetime
    decided: int = 0
    would_auto: int = 0
    auto_accepted: int = 0
    auto_edited: int = 0
    auto_rejected: int = 0
    auto_critical: int = 0
    held_for_approval: int = 0
    held_by_daily_cap: int = 0
    invalid: int = 0
    disagreements: list[BacktestAction] = field(default_factory=list)

    @property
    def auto_agreement(self) -> Agreement:
        """Agreement over the actions that would have executed on their own."""
        return Agreement(
            accepted=self.auto_accepted, edited=self.auto_edited, rejected=self.auto_rejected
        )

    @property
    def auto_disagreement_rate(self) -> float | None:
        rate = self.auto_agreement.rate
        return None if rate is None else 1 - rate

    def as_json(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "tool": self.tool,
            "caps": self.caps,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "decided": self.decided,
            "would_auto": self.would_auto,
            "auto_accepted": self.auto_accepted,
            "auto_edited": self.auto_edited,
            "auto_rejected": self.auto_rejected,
            "auto_critical": self.auto_critical,
            "held_for_approval": self.held_for_approval,
            "held_by_daily_cap": self.held_by_daily_cap,
            "invalid": self.invalid,
            "disagreement_proposal_ids": [a.proposal_id for a in self.disagreements],
        }


def caps_parse(raw: dict[str, Any]) -> dict[str, Decimal]:
    """Clean caps from a form or JSON; raises ValueError with a readable message."""
    caps: dict[str, Decimal] = {}
    for name in CAP_KEYS:
        value = raw.get(name)
        if value in (None, ""):
            continue
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise ValueError(ERR_BAD_CAP.format(name=name, value=value)) from None
        if number <= 0 or not number.is_finite():
            raise ValueError(ERR_BAD_CAP.format(name=name, value=value))
        caps[name] = number
    return caps


def backtest_run(
    *,
    workflow: Workflow,
    tool: str,
    caps: dict[str, Decimal],
    days: int = 30,
    now: datetime | None = None,
) -> BacktestResult:
    until = now or timezone.now()
    since = until - timedelta(days=days)
    tool_obj = registry_for(workflow).get(tool) or builtin_tool(tool)
    if tool_obj is None:
        raise ValueError(ERR_UNKNOWN_TOOL.format(tool=tool))

    # The same workflow and grant, as they would be at limited with these caps.
    hypothetical = copy.copy(workflow)
    hypothetical.autonomy_level = AutonomyLevel.LIMITED
    per_action = {k: str(v) for k, v in caps.items() if k in ("amount", "records")}
    grant = ToolGrant(
        workflow=hypothetical, tool=tool, autonomy_level=AutonomyLevel.LIMITED, caps=per_action
    )
    result = BacktestResult(
        workflow=workflow.slug,
        tool=tool,
        caps={k: str(v) for k, v in caps.items()},
        since=since,
        until=until,
    )
    decided = (
        Proposal.objects.filter(
            workflow=workflow, tool=tool, created_at__gte=since, created_at__lt=until
        )
        .filter(decision__isnull=False)
        .select_related("decision")
        .order_by("created_at", "pk")[:MAX_PROPOSALS]
    )
    day_count: dict[date, int] = defaultdict(int)
    day_amount: dict[date, Decimal] = defaultdict(Decimal)
    for proposal in decided:
        result.decided += 1
        decision: Decision = proposal.decision
        try:
            args = tool_obj.validate(privacy.reveal(proposal.arguments))
        except ValidationError:
            result.invalid += 1
            continue
        verdict = policy_evaluate(workflow=hypothetical, tool=tool_obj, args=args, grant=grant)
        roles = roles_for(tool_obj, hypothetical.policy) if verdict.allowed else None
        # As the runner decides: a flagged injection, or a sensitive argument that came
        # only from untrusted text, would have waited for a human.
        if (
            not verdict.allowed
            or not auto_execute_decision(
                verdict=verdict.verdict,
                level=AutonomyLevel.LIMITED,
                flagged=proposal.flagged_injection,
                provenance=proposal.provenance or {},
                risk_class=tool_obj.risk_class,
                roles=roles,
                tool=tool,
            ).auto
        ):
            result.held_for_approval += 1
            continue
        day = proposal.created_at.date()
        amount = tool_obj.policy_facts(args, roles).get("amount") or Decimal("0")
        if ("daily_count" in caps and day_count[day] + 1 > caps["daily_count"]) or (
            "daily_amount" in caps and day_amount[day] + amount > caps["daily_amount"]
        ):
            result.held_by_daily_cap += 1
            continue
        day_count[day] += 1
        day_amount[day] += amount
        result.would_auto += 1
        # Counted as agreement counts it: auto_accepted, auto_edited, auto_rejected.
        count = f"auto_{VERDICT_COUNT[decision.verdict]}"
        setattr(result, count, getattr(result, count) + 1)
        if is_critical(decision.verdict, decision.reason):
            result.auto_critical += 1
        if decision.verdict == Decision.Verdict.ACCEPT:
            continue
        result.disagreements.append(
            BacktestAction(
                proposal_id=proposal.pk,
                created_at=proposal.created_at,
                arguments=proposal.arguments,
                rule=verdict.rule,
                human_verdict=decision.verdict,
                reason=decision.reason,
            )
        )
    return result
