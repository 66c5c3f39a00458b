"""Cursor pagination on (created_at, id): stable under inserts, no OFFSET scans.

The cursor is opaque to clients (base64 of the last row's key); rows come
oldest first, so a client can walk forward from ``since`` and keep the last
cursor to pick up new rows later.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime

from governance.api import errors

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
ERR_BAD_CURSOR = "The cursor is not one this API returned."


def cursor_encode(created_at: datetime, pk: int) -> str:
    raw = json.dumps([created_at.isoformat(), pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, pk = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = parse_datetime(created)
        if moment is None or moment.tzinfo is None or not isinstance(pk, int):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise errors.ApiError(422, errors.VALIDATION_FAILED, ERR_BAD_CURSOR) from None
    return moment, pk


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def paginate(queryset: QuerySet, *, cursor: str | None, limit: int) -> Page:
    """One page of ``queryset`` ordered by (created_at, id), and the cursor after it."""
    queryset = queryset.order_by("created_at", "pk")
    if cursor:
        created, pk = cursor_decode(cursor)
        queryset = queryset.filter(Q(created_at__gt=created) | Q(created_at=created, pk__gt=pk))
    rows = list(queryset[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = cursor_encode(rows[-1].created_at, rows[-1].pk) if more and rows else None
    return Page(items=rows, next_cursor=next_cursor)
