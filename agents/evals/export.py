"""Eval cases as rows for the JSONL and CSV exports (redacted)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from agents.models import (
    EvalCase,
)
from agents.redaction import redact
from governance.models import Workflow

EVAL_CASE_COLUMNS = [
    "case_id",
    "suite",
    "name",
    "source",
    "source_proposal_id",
    "source_escalation_id",
    "external_id",
    "title",
    "payload",
    "recorded_outputs",
    "expected_outcome",
    "expected_actions",
    "forbidden_actions",
    "tags",
    "created_by",
    "created_at",
]


def eval_case_rows(
    workflow: Workflow, *, since: datetime | None = None, until: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Eval cases for export, redacted like every other export."""
    rows = EvalCase.objects.filter(suite__workflow=workflow).select_related("suite")
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    for case in rows.order_by("created_at", "pk").iterator(chunk_size=500):
        yield {
            "case_id": case.pk,
            "suite": case.suite.name,
            "name": redact(case.name),
            "source": case.source,
            "source_proposal_id": case.source_proposal_id,
            "source_escalation_id": case.source_escalation_id,
            "external_id": case.external_id,
            "title": redact(case.title),
            "payload": redact(case.payload),
            "recorded_outputs": redact(case.recorded_outputs),
            "expected_outcome": case.expected_outcome,
            "expected_actions": redact(case.expected_actions),
            "forbidden_actions": redact(case.forbidden_actions),
            "tags": case.tags,
            "created_by": case.created_by,
            "created_at": case.created_at,
        }
