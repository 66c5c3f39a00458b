"""The gate API: an outside agent's tool call in, Tenure's answer out (agents.gateway)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Field, Header, Query, Router, Schema

from agents.api import _json_response
from agents.gateway import (
    MAX_WAIT_SECONDS,
    GateError,
    GateRequest,
    gate_call_get,
    gate_submit,
    gate_wait,
)
from governance.api import errors
from governance.api.auth import access_workflow_api, token_of
from governance.api.schemas import ERROR_RESPONSES, StrictSchema
from governance.models import ApiToken

router = Router(tags=["gate for outside agents"])

ERR_NO_SUCH_CALL = "There is no gate call {id} on this workflow."


class GateContextIn(StrictSchema):
    input: Any = Field(None, description="What the agent saw (text or JSON).")
    trusted: bool = Field(
        False,
        description="True only for input from a system of record; untrusted input is "
        "scanned for injections and never grounds a value.",
    )


class GateCallIn(StrictSchema):
    tool: str = Field(min_length=1, max_length=100)
    arguments: dict[str, Any] = Field(default_factory=dict)
    agent_run_id: str = Field(min_length=1, max_length=200)
    step_id: str = Field("", max_length=200)
    context: GateContextIn | None = None
    callback_url: str = Field("", max_length=500)
    rationale: str = Field("", max_length=2000)


class GateAnswerOut(Schema):
    id: int
    status: str = Field(description="recorded | pending | executed | denied | rejected | failed")
    workflow: str
    tool: str
    agent_run_id: str
    step_id: str
    idempotency_key: str
    executed: bool
    level: str | None = None
    rule: str | None = None
    result: Any = None


class WaitQuery(Schema):
    wait: float = Field(0, ge=0, le=MAX_WAIT_SECONDS, description="Long-poll up to N seconds.")


def _refuse(exc: GateError) -> errors.ApiError:
    return errors.ApiError(exc.status, exc.code, exc.message, exc.details)


@router.post(
    "/workflows/{slug}/actions",
    response={200: GateAnswerOut, 201: GateAnswerOut, **ERROR_RESPONSES},
    summary="Send a tool call through the gate (idempotent)",
    description=(
        "An outside agent asks before it acts. The answer follows the tool's level: "
        "`recorded` (shadow, never executed), `pending` (a reviewer approves; poll "
        "`GET …/actions/{id}?wait=N` or give a `callback_url`), `executed` with the "
        "tool's result (limited, inside the caps), or `denied` with the rule. The "
        "`Idempotency-Key` header is required: a retry returns the same call's answer "
        "(200) and never acts twice. A paused workflow answers 409 `workflow_paused`. "
        "Scope: `actions:gate`."
    ),
)
def gate_call_post(
    request: HttpRequest,
    slug: str,
    body: GateCallIn,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
) -> HttpResponse:
    workflow = access_workflow_api(request, slug=slug, verb=ApiToken.Verb.ACTIONS_GATE)
    context = body.context.model_dump() if body.context is not None else None
    gate_request = GateRequest(
        tool=body.tool,
        arguments=body.arguments,
        agent_run_id=body.agent_run_id,
        step_id=body.step_id,
        idempotency_key=(idempotency_key or "").strip(),
        context=context,
        callback_url=body.callback_url,
        extra={"rationale": body.rationale} if body.rationale else {},
    )
    try:
        answer, created = gate_submit(
            workflow=workflow, request=gate_request, principal=token_of(request).principal
        )
    except GateError as exc:
        raise _refuse(exc) from exc
    return _json_response(answer, 201 if created else 200)


@router.get(
    "/workflows/{slug}/actions/{int:call_id}",
    response={200: GateAnswerOut, **ERROR_RESPONSES},
    summary="A gate call's answer now, or after a bounded wait",
    description=(
        f"`?wait=N` (at most {MAX_WAIT_SECONDS} s) holds the request while the call is "
        "pending and answers as soon as it settles. Scope: `actions:gate`."
    ),
)
def gate_call_read(
    request: HttpRequest, slug: str, call_id: int, query: Query[WaitQuery]
) -> HttpResponse:
    workflow = access_workflow_api(request, slug=slug, verb=ApiToken.Verb.ACTIONS_GATE)
    call = gate_call_get(workflow=workflow, call_id=call_id)
    if call is None:
        raise errors.ApiError(404, errors.NOT_FOUND, ERR_NO_SUCH_CALL.format(id=call_id))
    return _json_response(gate_wait(call=call, seconds=query.wait), 200)
