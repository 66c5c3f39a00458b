"""Shadow mode: the system of record reports what the human really did."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Header, Router

from governance.api import errors
from governance.api.auth import access_workflow_api, token_of
from governance.api.schemas import ERROR_RESPONSES
from governance.models import ApiToken
from reviews.api_schemas import ActionReportIn, ActionReportOut
from reviews.reported import ReportedArgumentsInvalid, ReportRefused, actions_report

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
