"""Ingest: create work items, one at a time or in batches, idempotently."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from ninja import Header, Router
from ninja.responses import NinjaJSONEncoder

from agents.api_schemas import (
    BatchIn,
    BatchOut,
    WorkItemIn,
    WorkItemOut,
)
from agents.models import WorkItem
from governance.api import errors
from governance.api.auth import access_workflow_api, token_of
from governance.api.schemas import ERROR_RESPONSES
from governance.models import ApiToken, Workflow

router = Router(tags=["work items"])

ERR_NO_IDENTITY = "Send an external_id in the body or an Idempotency-Key header."
ERR_KEY_TOO_LONG = "The Idempotency-Key header is longer than 200 characters."
ERR_IDEMPOTENCY_CONFLICT = (
    "A work item “{external_id}” already exists with a different title or payload. "
    "A retry must send the same body; a new item needs a new id."
)


def work_item_out(item: WorkItem, workflow: Workflow) -> dict[str, Any]:
    return {
        "id": item.pk,
        "workflow": workflow.slug,
        "external_id": item.external_id,
        "title": item.title,
        "status": item.status,
        "source": item.source,
        "created_at": item.created_at,
    }


def _json_response(body: dict[str, Any], status: int) -> HttpResponse:
    """The body rendered as ninja would (same encoder, so the same dates), without
    validating it against the response schema first: the rows come from the database's
    own values, and on the single-item path that validation was a tenth of ninja's cost.
    The OpenAPI conformance tests (schemathesis) check the shape still matches."""
    return HttpResponse(
        json.dumps(body, cls=NinjaJSONEncoder),
        status=status,
        content_type="application/json; charset=utf-8",
    )


def _canonical(payload: Any) -> str:
    # Keys sorted: jsonb stores an object's keys in its own order, so the stored payload
    # comes back reordered and an unsorted comparison called a faithful retry a conflict.
    return json.dumps(payload, cls=DjangoJSONEncoder, sort_keys=True)


def _same_body(item: WorkItem, *, title: str, payload: dict[str, Any]) -> bool:
    # An empty title lets the service take it from the payload, so only a sent one is compared.
    same_title = not title or item.title == title[:300]
    return same_title and _canonical(item.payload) == _canonical(payload)


def _create(
    *, workflow: Workflow, token: ApiToken, external_id: str, title: str, payload: dict[str, Any]
) -> tuple[WorkItem, bool]:
    from agents.services import work_item_create

    try:
        item, created = work_item_create(
            workflow=workflow,
            external_id=external_id,
            payload=payload,
            source=WorkItem.Source.API,
            title=title,
            principal=token.principal,
        )
    except IntegrityError:
        # Lost a race with a concurrent retry of the same item: that one created it.
        item = WorkItem.objects.get(workflow=workflow, external_id=external_id)
        created = False
    if not created and not _same_body(item, title=title, payload=payload):
        raise errors.ApiError(
            409,
            errors.CONFLICT,
            ERR_IDEMPOTENCY_CONFLICT.format(external_id=external_id),
            {"id": item.pk},
        )
    return item, created


@router.post(
    "/workflows/{slug}/work-items",
    response={200: WorkItemOut, 201: WorkItemOut, **ERROR_RESPONSES},
    summary="Create a work item (idempotent)",
    description=(
        "Creates the item and queues the agent on it. Idempotent on `external_id` (or the "
        "`Idempotency-Key` header when no external_id is sent): a retry returns the "
        "original item with 200, never a duplicate. Scope: `work_items:write`."
    ),
)
def work_item_post(
    request: HttpRequest,
    slug: str,
    body: WorkItemIn,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
) -> HttpResponse:
    workflow = access_workflow_api(request, slug=slug, verb=ApiToken.Verb.WORK_ITEMS_WRITE)
    key = (idempotency_key or "").strip()
    if len(key) > 200:
        raise errors.ApiError(422, errors.VALIDATION_FAILED, ERR_KEY_TOO_LONG)
    external_id = body.external_id or key
    if not external_id:
        raise errors.ApiError(422, errors.VALIDATION_FAILED, ERR_NO_IDENTITY)
    try:
        item, created = _create(
            workflow=workflow,
            token=token_of(request),
            external_id=external_id,
            title=body.title,
            payload=body.payload,
        )
    except DjangoValidationError as exc:
        # The message names the limit and where it was hit; details repeat them.
        details = dict(getattr(exc, "params", None) or {}) or None
        raise errors.ApiError(422, errors.VALIDATION_FAILED, exc.messages[0], details) from exc
    return _json_response(work_item_out(item, workflow), 201 if created else 200)


@router.post(
    "/workflows/{slug}/work-items/batch",
    response={200: BatchOut, 201: BatchOut, **ERROR_RESPONSES},
    summary="Create many work items (all or nothing)",
    description=(
        "Up to 1000 items. The whole batch validates first: one bad item answers 422 with "
        "per-item errors and nothing is written. Each item is idempotent on its external_id; "
        "201 when at least one item was created, 200 for a pure retry. Scope: "
        "`work_items:write`."
    ),
)
def work_item_batch_post(request: HttpRequest, slug: str, body: BatchIn) -> HttpResponse:
    from agents.services import NewWorkItem, work_items_create_bulk

    workflow = access_workflow_api(request, slug=slug, verb=ApiToken.Verb.WORK_ITEMS_WRITE)
    token = token_of(request)
    entries = [
        NewWorkItem(external_id=e.external_id, payload=e.payload, title=e.title) for e in body.items
    ]
    try:
        with transaction.atomic():
            pairs = work_items_create_bulk(
                workflow=workflow,
                items=entries,
                source=WorkItem.Source.API,
                principal=token.principal,
            )
            _refuse_changed_retries(body, pairs)
    except DjangoValidationError as exc:
        params = dict(getattr(exc, "params", None) or {})
        index = params.pop("index", None)
        details = {"index": index, **params}
        if index is not None:
            details["external_id"] = body.items[index].external_id
        raise errors.ApiError(422, errors.VALIDATION_FAILED, exc.messages[0], details) from exc
    except IntegrityError:
        # Only on the ORM fallback of agents.services._insert_new (the fast insert skips
        # ids a concurrent batch inserted first): go item by item, each idempotent,
        # still all or nothing.
        pairs = _create_one_by_one(workflow, token, body)
    results = [
        {"index": index, "created": created, "item": work_item_out(item, workflow)}
        for index, (item, created) in enumerate(pairs)
    ]
    created_count = sum(1 for r in results if r["created"])
    body_out = {
        "created": created_count,
        "existing": len(results) - created_count,
        "results": results,
    }
    # Validating 1000 nested results against BatchOut took longer than inserting them.
    return _json_response(body_out, 201 if created_count else 200)


def _refuse_changed_retries(body: BatchIn, pairs: list[tuple[WorkItem, bool]]) -> None:
    """All or nothing: an existing id sent with a different body undoes the batch."""
    for index, (entry, (item, created)) in enumerate(zip(body.items, pairs, strict=True)):
        if not created and not _same_body(item, title=entry.title, payload=entry.payload):
            raise errors.ApiError(
                409,
                errors.CONFLICT,
                ERR_IDEMPOTENCY_CONFLICT.format(external_id=entry.external_id),
                {"index": index, "external_id": entry.external_id},
            )


def _create_one_by_one(
    workflow: Workflow, token: ApiToken, body: BatchIn
) -> list[tuple[WorkItem, bool]]:
    pairs = []
    with transaction.atomic():
        for index, entry in enumerate(body.items):
            try:
                pairs.append(
                    _create(
                        workflow=workflow,
                        token=token,
                        external_id=entry.external_id,
                        title=entry.title,
                        payload=entry.payload,
                    )
                )
            except errors.ApiError as exc:
                exc.details = {"index": index, "external_id": entry.external_id}
                raise
    return pairs
