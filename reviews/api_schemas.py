"""Request and response shapes of the shadow-report and history API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from ninja import Schema
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from governance.api.schemas import (
    ERR_DUPLICATE_IN_BATCH,
    ExternalId,
    IsoDateTime,
    StrictSchema,
    Title,
)
from reviews.reported import (
    ERR_NO_ACTION_WITH_ARGUMENTS,
    ActionReportRequest,
    ReportedAction,
)

ToolName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Note = Annotated[str, StringConstraints(max_length=2000)]

# The most actions one item's report (or one imported pair) may carry.
MAX_ACTIONS = 50
# The most pairs one history request may carry.
MAX_HISTORY_BATCH = 500

ERR_TWO_SHAPES = "Send either `actions` (the set) or `tool` and `arguments` (one action), not both."
ERR_NO_SHAPE = "Send `actions` (the human's actions; [] for none) or `tool` (one action)."
ERR_ACTIONS_NULL = "`actions` must be a list; send [] when the human did nothing."
ERR_EMPTY_PARTIAL = (
    "No action closes the item: an empty set is the human's whole set, so `complete` "
    "cannot be false."
)

# --- Reported actions ----------------------------------------------------------------


class ActionIn(BaseModel):
    """One tool call: what the agent proposed, or what the human did."""

    # A plain pydantic model (a list of them is validated without ninja's per-item
    # wrapper), with StrictSchema's rule: an unknown field is an error.
    model_config = ConfigDict(extra="forbid")

    tool: ToolName
    arguments: dict[str, Any] = Field(default_factory=dict)


class ActionReportIn(StrictSchema):
    """What the human did about one work item: a set of actions (`actions`), or one
    action in the older shape (`tool` and `arguments`)."""

    external_id: ExternalId
    actions: list[ActionIn] | None = Field(
        None,
        max_length=MAX_ACTIONS,
        description="The human's actions on the item; [] when they did nothing.",
    )
    complete: bool | None = Field(
        None,
        description=(
            "Whether `actions` is the human's whole set for the item: pending proposals "
            "left unpaired are then rejected and the item closes. Defaults to true for "
            "`actions`, false for a single `tool` (null `tool`, no action, is complete)."
        ),
    )
    tool: ToolName | None = Field(
        None,
        description="One action's tool (the older shape); null when the human took no action.",
    )
    arguments: dict[str, Any] | None = Field(None, description="One action's arguments.")
    note: Note = ""
    seconds_spent: int = Field(
        0, ge=0, le=86_400, description="The human's time on the item, in seconds."
    )

    @model_validator(mode="after")
    def _one_shape(self) -> ActionReportIn:
        sent = self.model_fields_set
        if "actions" in sent and ({"tool", "arguments"} & sent):
            raise ValueError(ERR_TWO_SHAPES)
        if "actions" not in sent and "tool" not in sent:
            raise ValueError(ERR_NO_SHAPE)
        if "actions" in sent and self.actions is None:
            raise ValueError(ERR_ACTIONS_NULL)
        if "tool" in sent and self.tool is None and self.arguments:
            raise ValueError(ERR_NO_ACTION_WITH_ARGUMENTS)
        if not self.reported() and self.complete is False:
            raise ValueError(ERR_EMPTY_PARTIAL)
        return self

    def reported(self) -> list[ReportedAction]:
        if self.actions is not None:
            return [ReportedAction(tool=a.tool, arguments=a.arguments) for a in self.actions]
        if self.tool is None:
            return []
        return [ReportedAction(tool=self.tool, arguments=dict(self.arguments or {}))]

    def as_request(self) -> ActionReportRequest:
        actions = self.reported()
        if self.complete is not None:
            complete = self.complete
        else:
            # A set is the whole set; one action is a part of it; no action is all of it.
            complete = self.actions is not None or not actions
        return ActionReportRequest(
            external_id=self.external_id,
            actions=tuple(actions),
            complete=complete,
            note=self.note,
            seconds_spent=self.seconds_spent,
        )


class ReportedDecisionOut(Schema):
    decision_id: int
    proposal_id: int
    tool: str
    sequence: int
    verdict: str
    reason: str
    diff: dict[str, Any]
    action: int | None = Field(
        description="The position in the report of the action it was paired with; "
        "null when rejected (the human did not do it)."
    )


class MissedActionOut(Schema):
    id: int
    tool: str
    arguments: dict[str, Any]
    action: int = Field(description="The action's position in the report.")


class ItemOutcomeOut(Schema):
    id: int
    source: str
    did_nothing: bool
    imported: bool
    occurred_at: datetime


class ActionReportOut(Schema):
    external_id: str
    complete: bool
    decisions: list[ReportedDecisionOut]
    missed: list[MissedActionOut] = Field(
        description="Actions the human took that the agent did not propose."
    )
    already_recorded: list[int] = Field(
        description="Positions of actions already recorded on the item, not counted again."
    )
    pending: list[int] = Field(description="Ids of the item's proposals still pending.")
    outcome: ItemOutcomeOut | None = Field(
        description="The item's outcome, when this report completed the human's account."
    )


# --- Imported history ------------------------------------------------------------------


class HistoryPairIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId
    title: Title = ""
    payload: dict[str, Any] = Field(default_factory=dict)
    occurred_at: IsoDateTime = Field(
        description="When the human acted: ISO 8601 with a time zone, not in the future."
    )
    proposed: list[ActionIn] = Field(
        max_length=MAX_ACTIONS, description="What the agent proposed; [] for nothing."
    )
    human: list[ActionIn] = Field(
        max_length=MAX_ACTIONS, description="What the human did; [] for nothing."
    )


class HistoryIn(StrictSchema):
    pairs: list[HistoryPairIn] = Field(min_length=1, max_length=MAX_HISTORY_BATCH)

    @model_validator(mode="after")
    def _unique_external_ids(self) -> HistoryIn:
        seen: set[str] = set()
        for pair in self.pairs:
            if pair.external_id in seen:
                raise ValueError(ERR_DUPLICATE_IN_BATCH.format(external_id=pair.external_id))
            seen.add(pair.external_id)
        return self


class HistoryResultOut(Schema):
    index: int
    external_id: str
    created: bool
    work_item_id: int
    decisions: int
    missed: int
    did_nothing: bool


class HistoryOut(Schema):
    created: int
    existing: int
    results: list[HistoryResultOut]
