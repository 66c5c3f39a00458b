"""Request and response shapes of the ingest API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Schema
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from governance.api.schemas import (
    ERR_DUPLICATE_IN_BATCH,
    MAX_BATCH,
    ExternalId,
    StrictSchema,
    Title,
)

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
