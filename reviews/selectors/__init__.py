"""Reads for the reviewer queues: the queues (``queue``), the card (``card``) and
escalations (``escalations``)."""

from __future__ import annotations

from reviews.selectors.card import (
    ArgRow,
    BudgetUse,
    Card,
    GrantRead,
    PlanRow,
    TraceRow,
    approvers_required,
    card_for,
    effective_level,
    grant_read,
    tool_and_level,
    tool_and_level_read,
)
from reviews.selectors.escalations import EscalationView, escalation_for, escalation_rows
from reviews.selectors.queue import (
    COUNT_CAP,
    QUEUE_PAGE_SIZE,
    QueueFilters,
    QueueRow,
    QueueSize,
    awaiting_review_q,
    awaiting_sample_q,
    claimable_q,
    is_sample,
    oldest_pending_at,
    queue_rows,
    queue_sizes,
    tool_names,
)

__all__ = [
    "COUNT_CAP",
    "QUEUE_PAGE_SIZE",
    "ArgRow",
    "BudgetUse",
    "Card",
    "EscalationView",
    "GrantRead",
    "PlanRow",
    "QueueFilters",
    "QueueRow",
    "QueueSize",
    "TraceRow",
    "approvers_required",
    "awaiting_review_q",
    "awaiting_sample_q",
    "card_for",
    "claimable_q",
    "effective_level",
    "escalation_for",
    "escalation_rows",
    "grant_read",
    "is_sample",
    "oldest_pending_at",
    "queue_rows",
    "queue_sizes",
    "tool_and_level",
    "tool_and_level_read",
    "tool_names",
]
