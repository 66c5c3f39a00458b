"""Shadow mode: the system of record reports what the human really did, now or in the past."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Header, Router, Status

from governance.api import errors
from governance.api.auth import access_workflow_api, token_of
from governance.api.schemas import ERROR_RESPONSES
from governance.models import ApiToken
from reviews.api_schemas import (
    ActionReportIn,
    ActionReportOut,
    HistoryIn,
    HistoryOut,
    HistoryPairIn,
)
from reviews.history import HistoryConflict, HistoryInvalid, HistoryPair, history_import
from reviews.reported import (
    ReportedAction,
    ReportedArgumentsInvalid,
    ReportRefused,
    actions_report,
)

router = Router(tags=["shadow mode"])

# Sent on an answer that repeats a stored one (a retry with the same Idempotency-Key).
REPLAYED_HEADER = "Idempotent-Replayed"


@router.post(
    "/workflows/{slug}/actions/report",
    response={200: ActionReportOut, **ERROR_RESPONSES},
    summary="Report the human's actual actions",
    description=(
        "Judges the work item's pending proposals against what the human did. Each "
        "reported action pairs with the pending proposal of the same tool whose arguments "
        "differ in the fewest fields (ties: plan order): accept when equal, edit with the "
        "field diff otherwise. An action nothing was proposed for is recorded as missed. "
        "When the report is the human's whole set (`complete`, the default for `actions`), "
        "pending proposals left unpaired are rejected (`wrong_action`) and the item closes; "
        "`actions: []` (or `tool: null`) means the human did nothing. Send an "
        "`Idempotency-Key` header: a retry gets the original answer and counts nothing "
        "twice. Scope: `actions:report`."
    ),
)
def action_report(
    request: HttpRequest,
    slug: str,
    body: ActionReportIn,
    response: HttpResponse,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
) -> dict[str, Any]:
    workflow = access_workflow_api(request, slug=slug, verb=ApiToken.Verb.ACTIONS_REPORT)
    key = (idempotency_key or "").strip()
    if len(key) > 200:
        raise errors.ApiError(422, errors.VALIDATION_FAILED, errors.ERR_KEY_TOO_LONG)
    try:
        answer = actions_report(
            workflow=workflow,
            request=body.as_request(),
            principal=token_of(request).principal,
            idempotency_key=key,
        )
    except ReportedArgumentsInvalid as exc:
        details = exc.field_errors if body.actions is None else exc.message_dict
        raise errors.ApiError(
            422, errors.VALIDATION_FAILED, errors.ERR_VALIDATION, details
        ) from None
    except ReportRefused as exc:
        raise errors.ApiError(409, exc.code or errors.CONFLICT, exc.messages[0]) from None
    if answer.replayed:
        response[REPLAYED_HEADER] = "true"
    return answer.response


def _pair(entry: HistoryPairIn) -> HistoryPair:
    return HistoryPair(
        external_id=entry.external_id,
        title=entry.title,
        payload=entry.payload,
        occurred_at=entry.occurred_at,
        proposed=tuple(ReportedAction(tool=a.tool, arguments=a.arguments) for a in entry.proposed),
        human=tuple(ReportedAction(tool=a.tool, arguments=a.arguments) for a in entry.human),
    )


@router.post(
    "/workflows/{slug}/history",
    response={200: HistoryOut, 201: HistoryOut, **ERROR_RESPONSES},
    summary="Import past pairs: what the agent proposed and what the human did",
    description=(
        "Up to 500 pairs, all or nothing. Each becomes a resolved work item with the "
        "agent's proposals judged against the human's actions by the same rule as reports, "
        "dated `occurred_at` and marked imported. Idempotent on `external_id`: the same "
        "pair again is `existing` (200 for a pure retry); another body under an imported "
        "id, or an id the workflow holds as live work, is 409. Tools must be in the "
        "workflow's registry. Whether imported evidence counts toward the gate is the "
        "workflow's setting. Scope: `history:import`."
    ),
)
def history_post(request: HttpRequest, slug: str, body: HistoryIn) -> Status:
    workflow = access_workflow_api(request, slug=slug, verb=ApiToken.Verb.HISTORY_IMPORT)
    try:
        results = history_import(
            workflow=workflow,
            pairs=[_pair(entry) for entry in body.pairs],
            principal=token_of(request).principal,
        )
    except HistoryInvalid as exc:
        details = [
            {"index": index, "external_id": body.pairs[index].external_id, "errors": fields}
            for index, fields in exc.errors.items()
        ]
        raise errors.ApiError(422, errors.VALIDATION_FAILED, exc.messages[0], details) from None
    except HistoryConflict as exc:
        details = {"index": exc.index, "external_id": exc.external_id}
        raise errors.ApiError(409, errors.CONFLICT, exc.messages[0], details) from None
    created = sum(1 for r in results if r.created)
    return Status(
        201 if created else 200,
        {
            "created": created,
            "existing": len(results) - created,
            "results": [
                {
                    "index": r.index,
                    "external_id": r.external_id,
                    "created": r.created,
                    "work_item_id": r.work_item_id,
                    "decisions": r.decisions,
                    "missed": r.missed,
                    "did_nothing": r.did_nothing,
                }
                for r in results
            ],
        },
    )
