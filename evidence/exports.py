"""Exports (JSONL and CSV), shared by the API and the console.

Rows stream from the database in chunks, so an export of a year of decisions
never sits in memory. Free text and arguments pass through PII redaction
(``agents.redaction``) on the way out, and every export is an audit event.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.http import StreamingHttpResponse
from django.utils import timezone

from governance.audit import audit_append
from governance.models import Workflow
from reviews.models import Decision

try:
    from agents.redaction import redact
except ImportError:  # pragma: no cover - redaction ships with the runtime

    def redact(value: Any) -> Any:
        return value


FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
CHUNK = 500
ERR_UNKNOWN_FORMAT = "“{format}” is not an export format: jsonl or csv."
ERR_UNKNOWN_EXPORT = "“{kind}” cannot be exported; available: {kinds}."

DECISION_COLUMNS = [
    "decision_id",
    "created_at",
    "workflow",
    "external_id",
    "work_item_title",
    "proposal_id",
    "sequence",
    "tool",
    "risk_class",
    "proposal_verdict",
    "kind",
    "verdict",
    "reason",
    "reason_text",
    "reviewer",
    "autonomy_level",
    "seconds_spent",
    "confidence",
    "rationale",
    "proposed_arguments",
    "final_arguments",
    "diff",
]


def decision_rows(
    workflow: Workflow, *, since: datetime | None = None, until: datetime | None = None
) -> Iterator[dict[str, Any]]:
    rows = (
        Decision.objects.filter(proposal__workflow=workflow)
        .select_related("proposal__work_item", "reviewer")
        .order_by("created_at", "pk")
    )
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    for d in rows.iterator(chunk_size=CHUNK):
        p = d.proposal
        yield {
            "decision_id": d.pk,
            "created_at": d.created_at,
            "workflow": workflow.slug,
            "external_id": p.work_item.external_id,
            "work_item_title": redact(p.work_item.title),
            "proposal_id": p.pk,
            "sequence": p.sequence,
            "tool": p.tool,
            "risk_class": p.risk_class,
            "proposal_verdict": p.verdict,
            "kind": d.kind,
            "verdict": d.verdict,
            "reason": d.reason,
            "reason_text": redact(d.reason_text),
            "reviewer": d.reviewer.get_username() if d.reviewer_id else "",
            "autonomy_level": d.autonomy_level,
            "seconds_spent": d.seconds_spent,
            "confidence": p.confidence,
            "rationale": redact(p.rationale),
            "proposed_arguments": redact(p.arguments),
            "final_arguments": redact(d.final_arguments),
            "diff": redact(d.diff),
        }


def eval_case_rows(workflow: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    # Imported here: the eval module pulls in the runner, which the API need not load.
    from agents.evals import eval_case_rows as rows

    return rows(workflow, **kwargs)


def _eval_case_columns() -> list[str]:
    from agents.evals import EVAL_CASE_COLUMNS

    return list(EVAL_CASE_COLUMNS)


# kind -> (rows, CSV columns).
EXPORTS: dict[str, tuple[Callable[..., Iterator[dict[str, Any]]], list[str]]] = {
    "decisions": (decision_rows, DECISION_COLUMNS),
    "eval_cases": (eval_case_rows, _eval_case_columns()),
}

_encoder = DjangoJSONEncoder()
# A cell a spreadsheet would run as a formula; agent output and work-item text are untrusted.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, sort_keys=True, cls=DjangoJSONEncoder)
    elif isinstance(value, datetime):
        value = value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def jsonl_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield _encoder.encode(row) + "\n"


def csv_lines(rows: Iterable[dict[str, Any]], columns: list[str]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_cell(row.get(key)) for key in columns})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate(0)
    if buffer.getvalue():
        yield buffer.getvalue()


def export_response(
    *,
    kind: str,
    workflow: Workflow,
    fmt: str,
    actor: AbstractBaseUser | str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> StreamingHttpResponse:
    """Audit the export, then stream it. ``kind`` and ``fmt`` must be validated."""
    rows_for, columns = EXPORTS[kind]
    audit_append(
        action=f"export.{kind}",
        actor=actor,
        workflow=workflow,
        data={
            "format": fmt,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        },
    )
    rows = rows_for(workflow, since=since, until=until)
    lines = jsonl_lines(rows) if fmt == "jsonl" else csv_lines(rows, columns)
    response = StreamingHttpResponse(lines, content_type=f"{FORMATS[fmt]}; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="{workflow.slug}-{kind}-{stamp}.{fmt}"'
    response["Cache-Control"] = "no-store"
    return response
