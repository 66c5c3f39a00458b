"""Shadow mode: the system of record reports what the human really did."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router

from governance.api import errors
from governance.api.auth import access_workflow_api, token_of
from governance.api.schemas import ERROR_RESPONSES
from governance.models import ApiToken
from reviews.api_schemas import ActionReportIn, ActionReportOut
from reviews.reported import ReportedArgumentsInvalid, ReportRefused, proposal_report_actual

router = Router(tags=["shadow mode"])


@router.post(
    "/workflows/{slug}/actions/report",
    response={200: ActionReportOut, **ERROR_RESPONSES},
    summary="Report the human's actual action",
    description=(
        "Pairs the action with the work item's pending proposal for the same tool and "
        "records a `reported` decision: accept (same arguments), edit (with the field diff) "
        "or reject `wrong_action` (another tool, or `tool: null` for no action). 409 when "
        "nothing is pending. Scope: `actions:report`."
    ),
)
def action_report(request: HttpRequest, slug: str, body: ActionReportIn) -> dict[str, Any]:
    workflow = access_workflow_api(request, slug=slug, verb=ApiToken.Verb.ACTIONS_REPORT)
    try:
        decisions = proposal_report_actual(
            workflow=workflow,
            external_id=body.external_id,
            tool=body.tool,
            arguments=body.arguments,
            principal=token_of(request).principal,
            note=body.note,
            seconds_spent=body.seconds_spent,
        )
    except ReportedArgumentsInvalid as exc:
        raise errors.ApiError(
            422, errors.VALIDATION_FAILED, errors.ERR_VALIDATION, exc.field_errors
        ) from None
    except ReportRefused as exc:
        raise errors.ApiError(409, exc.code or errors.CONFLICT, exc.messages[0]) from None
    return {
        "external_id": body.external_id,
        "decisions": [
            {
                "decision_id": d.pk,
                "proposal_id": d.proposal_id,
                "tool": d.proposal.tool,
                "verdict": d.verdict,
                "reason": d.reason,
                "diff": d.diff,
            }
            for d in decisions
        ],
    }
