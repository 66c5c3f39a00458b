"""Request and response shapes of the API (pydantic, through ninja)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from ninja import Schema
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

MAX_BATCH = 1000

ExternalId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)]

ERR_NOT_ISO_DATETIME = "must be an ISO 8601 date-time with a time zone, e.g. 2026-01-01T00:00:00Z"


def _iso_datetime_only(value: Any) -> Any:
    """Refuse what pydantic would otherwise read as a Unix timestamp ("123", 1.5):
    a time in a query is an ISO 8601 string, and a number is a caller's mistake."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError(ERR_NOT_ISO_DATETIME)
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(ERR_NOT_ISO_DATETIME) from None


# A query-string date-time: ISO 8601 only (a naive one is refused by the endpoint, with
# its own message).
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_datetime_only)]

ERR_DUPLICATE_IN_BATCH = "external_id “{external_id}” appears more than once in the batch."


class StrictSchema(Schema):
    # A misspelt field is an error, not silently dropped data.
    model_config = ConfigDict(extra="forbid")


class ErrorBody(Schema):
    code: str
    message: str
    details: Any = None


class ErrorOut(Schema):
    error: ErrorBody


# --- Work items -------------------------------------------------------------------


class WorkItemIn(StrictSchema):
    external_id: ExternalId | None = Field(
        None, description="Your id for the item. Defaults to the Idempotency-Key header."
    )
    title: Title = ""
    payload: dict[str, Any] = Field(default_factory=dict)


class WorkItemOut(Schema):
    id: int
    workflow: str
    external_id: str
    title: str
    status: str
    source: str
    created_at: datetime


class BatchItemIn(BaseModel):
    # A plain pydantic model, not a ninja Schema: a Schema wraps every instance in a
    # Python-level validator (for ORM attribute access), which cost ~40 µs an item on a
    # batch of 1000. The rules are the same as StrictSchema's.
    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId
    title: Title = ""
    payload: dict[str, Any] = Field(default_factory=dict)


class BatchIn(StrictSchema):
    items: list[BatchItemIn] = Field(min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _unique_external_ids(self) -> BatchIn:
        seen: set[str] = set()
        for item in self.items:
            if item.external_id in seen:
                raise ValueError(ERR_DUPLICATE_IN_BATCH.format(external_id=item.external_id))
            seen.add(item.external_id)
        return self


class BatchResult(Schema):
    index: int
    created: bool
    item: WorkItemOut


class BatchOut(Schema):
    created: int
    existing: int
    results: list[BatchResult]


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


# --- Reported actions ----------------------------------------------------------------


class ActionReportIn(StrictSchema):
    external_id: ExternalId
    tool: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        None, description="The tool the human used; null when they took no action."
    )
    arguments: dict[str, Any] = Field(default_factory=dict)
    note: Annotated[str, StringConstraints(max_length=2000)] = ""
    seconds_spent: int = Field(0, ge=0, le=86_400)


class ReportedDecisionOut(Schema):
    decision_id: int
    proposal_id: int
    tool: str
    verdict: str
    reason: str
    diff: dict[str, Any]


class ActionReportOut(Schema):
    external_id: str
    decisions: list[ReportedDecisionOut]


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
