"""Streamed exports for integrations (JSONL or CSV)."""

from __future__ import annotations

from django.http import HttpRequest, StreamingHttpResponse
from ninja import Query, Router, Schema
from pydantic import Field

from evidence.api.reads import ERR_NAIVE_SINCE
from evidence.exports import ERR_UNKNOWN_EXPORT, ERR_UNKNOWN_FORMAT, EXPORTS, FORMATS
from evidence.exports import export_response as build_export
from governance.api import errors
from governance.api.auth import access_workflow_api, token_of
from governance.api.schemas import ERROR_RESPONSES, IsoDateTime
from governance.models import ApiToken

router = Router(tags=["export"])


class ExportQuery(Schema):
    format: str = Field("jsonl", description="jsonl or csv")
    since: IsoDateTime | None = None
    until: IsoDateTime | None = None


@router.get(
    "/workflows/{slug}/export/{kind}",
    response={200: None, **ERROR_RESPONSES},
    summary="Export decisions (JSONL or CSV)",
    description=(
        "Streams every decision of the workflow (oldest first), PII redacted. Scope: `export:read`."
    ),
)
def export_get(
    request: HttpRequest, slug: str, kind: str, query: Query[ExportQuery]
) -> StreamingHttpResponse:
    workflow = access_workflow_api(request, slug=slug, verb=ApiToken.Verb.EXPORT_READ)
    if kind not in EXPORTS:
        raise errors.ApiError(
            404, errors.NOT_FOUND, ERR_UNKNOWN_EXPORT.format(kind=kind, kinds=", ".join(EXPORTS))
        )
    if query.format not in FORMATS:
        raise errors.ApiError(
            422, errors.VALIDATION_FAILED, ERR_UNKNOWN_FORMAT.format(format=query.format)
        )
    for moment in (query.since, query.until):
        if moment is not None and moment.tzinfo is None:
            raise errors.ApiError(422, errors.VALIDATION_FAILED, ERR_NAIVE_SINCE)
    return build_export(
        kind=kind,
        workflow=workflow,
        fmt=query.format,
        actor=token_of(request).principal,
        since=query.since,
        until=query.until,
    )
