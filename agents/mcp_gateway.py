"""Tenure's MCP gateway: one streamable-HTTP MCP endpoint per workflow, ``/mcp/<slug>/``.

An MCP client (an IDE agent, an agent framework) connects with a scoped API token
(``Authorization: Bearer``, verb ``actions:gate``, the workflow in its scope) and
sees the workflow's granted tools in ``tools/list``, with MCP annotations from their
risk classes. Every ``tools/call`` goes through the same gate as the gate API
(``agents.gateway``): at shadow it answers a structured "recorded, not executed"
result, a held call answers pending with its id (poll it with the ``tenure_poll``
tool, or ask to wait up to a bound with ``_meta``), an in-cap call at limited
answers the tool's result, a denial answers the rule.

Idempotency: a call's key is ``_meta["tenure/idempotencyKey"]`` when the client
sends one, else derived from the agent run (``X-Agent-Run-Id``, default the
token), the tool and its arguments, so a retried call is the same call. The same
key with edited arguments is refused (the approval is bound to the arguments'
hash); edited arguments under a new key are a new call, which waits again.

It is an ASGI app of its own (Starlette with the official ``mcp`` SDK's session
manager), served by ``manage.py mcp_gateway`` next to the WSGI console.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection
from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount

from agents.gateway import (
    MAX_WAIT_SECONDS,
    PENDING,
    RECORDED,
    GateError,
    GateRequest,
    gate_call_get,
    gate_submit,
    gate_wait,
)
from agents.mcp_upstream import META_KEY
from agents.models import GateCall, RiskClass
from agents.tools import registry_for
from governance import sql as governance_sql
from governance.api.tokens import api_token_lookup_cached
from governance.models import ApiToken, Workflow

POLL_TOOL = "tenure_poll"
META_WAIT = "tenure/wait"
RUN_HEADER = b"x-agent-run-id"
ERR_TOKEN = "Send an API token with the actions:gate scope: Authorization: Bearer <token>."  # noqa: S105 - a message
ERR_SCOPE = "This token may not use the workflow “{slug}” through the gate."
ERR_UNKNOWN_CALL = "There is no gate call {id} on this workflow."
NOTES = {
    RECORDED: "Recorded by Tenure for human review; not executed (shadow mode).",
    PENDING: "Waiting for a reviewer's approval in Tenure; not executed yet. "
    f"Poll it with the {POLL_TOOL} tool.",
}
# Risk classes shown to MCP clients as destructive.
DESTRUCTIVE = {RiskClass.DELETE, RiskClass.ACCESS, RiskClass.MONEY}


def _in_thread(fn: Any) -> Any:
    """``fn`` run in a worker thread, its database connection closed after it: the
    gateway is asynchronous, the ORM is not, and a pooled thread must not keep one."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return sync_to_async(run, thread_sensitive=False)


def _authorise(token: str, slug: str) -> tuple[Workflow, ApiToken] | None:
    found, _ = api_token_lookup_cached(token)
    if found is None or found.revoked_at is not None:
        return None
    if ApiToken.Verb.ACTIONS_GATE not in found.verbs:
        return None
    workflow = governance_sql.workflow_in_token_scope(token_id=found.pk, slug=slug)
    if workflow is None:
        return None
    return workflow, found


def _tools(workflow_id: int) -> list[types.Tool]:
    workflow = Workflow.objects.get(pk=workflow_id)
    grants = governance_sql.grants_of(workflow.pk)
    registry = registry_for(workflow, granted={n for n, g in grants.items() if g.enabled})
    tools = []
    for tool in sorted(registry.values(), key=lambda t: t.name):
        schema = tool.to_openai_tool()["function"]["parameters"]
        tools.append(
            types.Tool(
                name=tool.name,
                description=tool.description,
                input_schema=schema,
                annotations=types.ToolAnnotations(
                    read_only_hint=tool.is_read,
                    destructive_hint=tool.risk_class in DESTRUCTIVE,
                ),
            )
        )
    tools.append(
        types.Tool(
            name=POLL_TOOL,
            description="Tenure: the answer of a held call now, or once it settles "
            f"(wait up to {MAX_WAIT_SECONDS} seconds).",
            input_schema={
                "type": "object",
                "properties": {
                    "call_id": {"type": "integer"},
                    "wait": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
                },
                "required": ["call_id"],
            },
            annotations=types.ToolAnnotations(read_only_hint=True),
        )
    )
    return tools


def _key(run_id: str, tool: str, arguments: dict[str, Any]) -> str:
    body = json.dumps([run_id, tool, arguments], sort_keys=True, default=str)
    return "mcp-" + hashlib.sha256(body.encode()).hexdigest()[:40]


def _call(
    *, workflow_id: int, principal: str, run_id: str, name: str, arguments: dict, meta: dict
) -> dict[str, Any]:
    workflow = Workflow.objects.get(pk=workflow_id)
    wait = float(meta.get(META_WAIT) or 0)
    if name == POLL_TOOL:
        call = gate_call_get(workflow=workflow, call_id=int(arguments.get("call_id", 0)))
        if call is None:
            raise GateError(ERR_UNKNOWN_CALL.format(id=arguments.get("call_id")))
        return gate_wait(call=call, seconds=float(arguments.get("wait") or 0))
    request = GateRequest(
        tool=name,
        arguments=arguments,
        agent_run_id=run_id,
        idempotency_key=str(meta.get(META_KEY) or _key(run_id, name, arguments)),
        channel=GateCall.Channel.MCP,
    )
    answer, _ = gate_submit(workflow=workflow, request=request, principal=principal)
    if answer["status"] == PENDING and wait > 0:
        call = gate_call_get(workflow=workflow, call_id=answer["id"])
        if call is not None:
            answer = gate_wait(call=call, seconds=wait)
    return answer


def _result(answer: dict[str, Any]) -> types.CallToolResult:
    status = answer["status"]
    if status == "executed":
        text = json.dumps(answer.get("result"), default=str)
    else:
        note = NOTES.get(status) or f"Not executed: {status}. {answer.get('rule') or ''}".strip()
        text = f"{note} (gate call {answer['id']})"
    structured = json.loads(json.dumps({**answer, "note": NOTES.get(status, "")}, default=str))
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=structured,
        is_error=status in ("denied", "rejected", "failed"),
    )


async def _on_list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    state = ctx.request.scope["state"]["tenure"]
    tools = await _in_thread(_tools)(state["workflow_id"])
    return types.ListToolsResult(tools=tools)


async def _on_call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    state = ctx.request.scope["state"]["tenure"]
    meta = params.meta or {}
    if not isinstance(meta, dict):
        meta = meta.model_dump(by_alias=True)
    try:
        answer = await _in_thread(_call)(
            workflow_id=state["workflow_id"],
            principal=state["principal"],
            run_id=state["run_id"],
            name=params.name,
            arguments=dict(params.arguments or {}),
            meta=meta,
        )
    except GateError as exc:
        # Refused before anything was recorded: the kill switch, a conflict, bad input.
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=f"Refused by Tenure: {exc.message}")],
            structured_content=json.loads(
                json.dumps(
                    {
                        "status": "refused",
                        "code": exc.code,
                        "message": exc.message,
                        "details": exc.details,
                    },
                    default=str,
                )
            ),
            is_error=True,
        )
    return _result(answer)


def gateway_app() -> Starlette:
    server = Server("tenure-gate", on_list_tools=_on_list_tools, on_call_tool=_on_call_tool)
    manager = StreamableHTTPSessionManager(app=server, stateless=True, json_response=True)

    async def gate(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        slug = scope["path"].removeprefix(scope.get("root_path", "")).strip("/").split("/")[0]
        headers = dict(scope.get("headers") or [])
        scheme, _, token = headers.get(b"authorization", b"").decode().partition(" ")
        found = None
        if scheme.lower() == "bearer" and token.strip() and slug:
            found = await _in_thread(_authorise)(token.strip(), slug)
        if found is None:
            message = ERR_SCOPE.format(slug=slug) if token else ERR_TOKEN
            status = 403 if token else 401
            response = JSONResponse({"error": {"code": "forbidden", "message": message}}, status)
            await response(scope, receive, send)
            return
        workflow, api_token = found
        run_id = headers.get(RUN_HEADER, b"").decode()[:200] or f"mcp:{api_token.prefix}"
        scope.setdefault("state", {})["tenure"] = {
            "workflow_id": workflow.pk,
            "principal": api_token.principal,
            "run_id": run_id,
        }
        await manager.handle_request(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(routes=[Mount("/mcp", app=gate)], lifespan=lifespan)
