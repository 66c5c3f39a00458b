"""What every API route shares: strict bodies, the error body, ISO date-times, ids."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from ninja import Schema
from pydantic import (
    BeforeValidator,
    ConfigDict,
    StringConstraints,
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


# The error answers every route documents (each with the one error body).
ERROR_RESPONSES: dict[int, type] = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    413: ErrorOut,
    422: ErrorOut,
    429: ErrorOut,
}
