"""Request and response shapes of the shadow-report API."""

from __future__ import annotations

from typing import Annotated, Any

from ninja import Schema
from pydantic import (
    Field,
    StringConstraints,
)

from governance.api.schemas import (
    ExternalId,
    StrictSchema,
)

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
