"""Read proposals, decisions and executions: filters and cursor pagination."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Schema
from pydantic import Field

from agents.models import Execution, Proposal
from evidence.api.schemas import DecisionPage, ExecutionPage, ProposalPage
from governance.api import errors
from governance.api.auth import workflow_ids_in_scope
from governance.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, paginate
from governance.api.schemas import ERROR_RESPONSES, IsoDateTime
from governance.models import ApiToken
from reviews.models import Decision

router = Router(tags=["reads"])

ERR_BAD_CHOICE = "“{value}” is not a valid {name}; choose from: {choices}."
ERR_NAIVE_SINCE = "since must carry a time zone (e.g. 2026-01-01T00:00:00Z)."


class ListFilters(Schema):
    workflow: str | None = Field(None, description="A workflow slug; default: all the token's.")
    since: IsoDateTime | None = Field(
        None, description="Only rows created at or after this time (ISO 8601, with a zone)."
    )
    cursor: str | None = Field(None, description="next_cursor from the previous page.")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


class ProposalFilters(ListFilters):
    status: str | None = None
    tool: str | None = None


class DecisionFilters(ListFilters):
    verdict: str | None = None
    kind: str | None = None


class ExecutionFilters(ListFilters):
    status: str | None = None


def _choice(name: str, value: str | None, allowed: list[str]) -> str | None:
    if value is not None and value not in allowed:
        raise errors.ApiError(
            422,
            errors.VALIDATION_FAILED,
            ERR_BAD_CHOICE.format(value=value, name=name, choices=", ".join(allowed)),
        )
    return value


def _since(filters: ListFilters) -> datetime | None:
    if filters.since is not None and filters.since.tzinfo is None:
        raise errors.ApiError(422, errors.VALIDATION_FAILED, ERR_NAIVE_SINCE)
    return filters.since


def proposal_out(p: Proposal) -> dict[str, Any]:
    return {
        "id": p.pk,
        "workflow": p.workflow.slug,
        "work_item_id": p.work_item_id,
        "external_id": p.work_item.external_id,
        "run_id": p.run_id,
        "sequence": p.sequence,
        "tool": p.tool,
        "arguments": p.arguments,
        "rationale": p.rationale,
        "confidence": p.confidence,
        "risk_class": p.risk_class,
        "verdict": p.verdict,
        "verdict_rule": p.verdict_rule,
        "flagged_injection": p.flagged_injection,
        "provenance": p.provenance or {},
        "autonomy_level": p.autonomy_level,
        "status": p.status,
        "created_at": p.created_at,
        "decided_at": p.decided_at,
    }


def decision_out(d: Decision) -> dict[str, Any]:
    return {
        "id": d.pk,
        "workflow": d.proposal.workflow.slug,
        "proposal_id": d.proposal_id,
        "external_id": d.proposal.work_item.external_id,
        "tool": d.proposal.tool,
        "kind": d.kind,
        "verdict": d.verdict,
        "final_arguments": d.final_arguments,
        "diff": d.diff,
        "reason": d.reason,
        "reason_text": d.reason_text,
        "reviewer": d.reviewer.get_username() if d.reviewer_id else None,
        "autonomy_level": d.autonomy_level,
        "seconds_spent": d.seconds_spent,
        "created_at": d.created_at,
    }


def execution_out(e: Execution) -> dict[str, Any]:
    return {
        "id": e.pk,
        "workflow": e.proposal.workflow.slug,
        "proposal_id": e.proposal_id,
        "external_id": e.proposal.work_item.external_id,
        "tool": e.proposal.tool,
        "idempotency_key": e.idempotency_key,
        "status": e.status,
        "attempts": e.attempts,
        "error": e.error,
        "auto": e.auto,
        "principal": e.principal,
        "created_at": e.created_at,
        "started_at": e.started_at,
        "finished_at": e.finished_at,
    }


@router.get(
    "/proposals",
    response={200: ProposalPage, **ERROR_RESPONSES},
    summary="List proposals",
    description="Oldest first; follow next_cursor. Scope: `proposals:read`.",
)
def proposals_list(request: HttpRequest, filters: Query[ProposalFilters]) -> dict[str, Any]:
    ids = workflow_ids_in_scope(request, verb=ApiToken.Verb.PROPOSALS_READ, slug=filters.workflow)
    rows = Proposal.objects.filter(workflow_id__in=ids).select_related("workflow", "work_item")
    if status := _choice("status", filters.status, Proposal.Status.values):
        rows = rows.filter(status=status)
    if filters.tool:
        rows = rows.filter(tool=filters.tool)
    if since := _since(filters):
        rows = rows.filter(created_at__gte=since)
    page = paginate(rows, cursor=filters.cursor, limit=filters.limit)
    return {"items": [proposal_out(p) for p in page.items], "next_cursor": page.next_cursor}


@router.get(
    "/decisions",
    response={200: DecisionPage, **ERROR_RESPONSES},
    summary="List decisions",
    description="Oldest first; follow next_cursor. Scope: `decisions:read`.",
)
def decisions_list(request: HttpRequest, filters: Query[DecisionFilters]) -> dict[str, Any]:
    ids = workflow_ids_in_scope(request, verb=ApiToken.Verb.DECISIONS_READ, slug=filters.workflow)
    rows = Decision.objects.filter(proposal__workflow_id__in=ids).select_related(
        "proposal__workflow", "proposal__work_item", "reviewer"
    )
    if verdict := _choice("verdict", filters.verdict, Decision.Verdict.values):
        rows = rows.filter(verdict=verdict)
    if kind := _choice("kind", filters.kind, Decision.Kind.values):
        rows = rows.filter(kind=kind)
    if since := _since(filters):
        rows = rows.filter(created_at__gte=since)
    page = paginate(rows, cursor=filters.cursor, limit=filters.limit)
    return {"items": [decision_out(d) for d in page.items], "next_cursor": page.next_cursor}


@router.get(
    "/executions",
    response={200: ExecutionPage, **ERROR_RESPONSES},
    summary="List executions",
    description="Oldest first; follow next_cursor. Scope: `executions:read`.",
)
def executions_list(request: HttpRequest, filters: Query[ExecutionFilters]) -> dict[str, Any]:
    ids = workflow_ids_in_scope(request, verb=ApiToken.Verb.EXECUTIONS_READ, slug=filters.workflow)
    rows = Execution.objects.filter(proposal__workflow_id__in=ids).select_related(
        "proposal__workflow", "proposal__work_item"
    )
    if status := _choice("status", filters.status, Execution.Status.values):
        rows = rows.filter(status=status)
    if since := _since(filters):
        rows = rows.filter(created_at__gte=since)
    page = paginate(rows, cursor=filters.cursor, limit=filters.limit)
    return {"items": [execution_out(e) for e in page.items], "next_cursor": page.next_cursor}
