"""Response shapes of the read, metrics and export API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from ninja import Schema
from pydantic import Field

# --- Reads ------------------------------------------------------------------------


class ProposalOut(Schema):
    id: int
    workflow: str
    work_item_id: int
    external_id: str
    run_id: int
    sequence: int
    tool: str
    arguments: dict[str, Any]
    rationale: str
    confidence: Decimal | None
    risk_class: str
    verdict: str
    verdict_rule: str
    flagged_injection: bool
    # Where each sensitive argument came from: {"$.amount": {"role", "value", "source"}}
    provenance: dict[str, Any] = {}
    autonomy_level: str
    status: str
    created_at: datetime
    decided_at: datetime | None


class DecisionOut(Schema):
    id: int
    workflow: str
    proposal_id: int
    external_id: str
    tool: str
    kind: str
    verdict: str
    final_arguments: dict[str, Any]
    diff: dict[str, Any]
    reason: str
    reason_text: str
    reviewer: str | None
    autonomy_level: str
    seconds_spent: int
    created_at: datetime


class ExecutionOut(Schema):
    id: int
    workflow: str
    proposal_id: int
    external_id: str
    tool: str
    idempotency_key: str
    status: str
    attempts: int
    error: str
    auto: bool
    principal: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ProposalPage(Schema):
    items: list[ProposalOut]
    next_cursor: str | None


class DecisionPage(Schema):
    items: list[DecisionOut]
    next_cursor: str | None


class ExecutionPage(Schema):
    items: list[ExecutionOut]
    next_cursor: str | None


# --- Metrics ---------------------------------------------------------------------------


class AgreementOut(Schema):
    accepted: int
    edited: int
    rejected: int
    n: int
    rate: float | None
    wilson_low: float
    wilson_high: float


class CostOut(Schema):
    model_usd: Decimal
    tool_usd: Decimal
    reviewer_usd: Decimal
    total_usd: Decimal
    successful_outcomes: int
    per_outcome_usd: Decimal | None
    target_usd: Decimal | None
    within_target: bool | None


class ToolErrorsOut(Schema):
    tool: str
    calls: int
    errors: int
    rate: float | None


class ProportionOut(Schema):
    successes: int
    n: int
    rate: float | None
    wilson_low: float
    wilson_high: float


class ItemsOut(Schema):
    items: int = Field(description="Items whose account of what the human did is complete.")
    agreed: int = Field(description="Of them, the agent's whole plan was right.")
    both_did_nothing: int
    imported: int
    agreement: ProportionOut


class ActionsOut(Schema):
    exact: int = Field(description="Proposed and accepted as it stood.")
    edited: int = Field(description="Proposed and done after an edit.")
    extra: int = Field(description="Proposed and not done (rejected).")
    missed: int = Field(description="Done by the human, never proposed.")
    imported: int = Field(description="Of these, from imported history.")
    precision: ProportionOut = Field(description="exact / (exact + edited + extra).")
    recall: ProportionOut = Field(description="exact / (exact + edited + missed).")
    item_agreement: ItemsOut


class CoverageOut(Schema):
    proposed: int
    waiting: int = Field(description="Still waiting for a human: outside the ratio.")
    settled: int
    judged: int
    not_judged: dict[str, int] = Field(description="Settled without a verdict, by reason.")
    auto_executed_unsampled: int = Field(
        description="Executed on their own and not sampled: outside the ratio."
    )
    coverage: float | None = Field(description="judged / settled.")


class ComparisonOut(ActionsOut):
    coverage: CoverageOut
    by_tool: dict[str, ActionsOut]
    by_day: dict[str, ActionsOut]


class MetricsOut(Schema):
    workflow: str
    since: datetime
    autonomy_level: str
    paused: bool
    received: int
    resolved: int
    succeeded: int
    success_rate: float | None
    agreement: AgreementOut
    critical_rejections: int
    cost: CostOut
    escalations: int
    escalation_rate: float | None
    runs: int
    mean_tool_calls: float | None
    retry_rate: float | None
    time_to_safe_fail_seconds: float | None
    tool_errors: list[ToolErrorsOut]
    budget_trips: dict[str, int]
    decisions: int
    reviewer_seconds_per_decision: float | None
    pending_proposals: int
    open_escalations: int
    comparison: ComparisonOut = Field(
        description="The agent's plans against what the humans did, item by item."
    )
