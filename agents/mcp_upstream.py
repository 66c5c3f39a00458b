"""Upstream MCP servers behind the gateway: import their ``tools/list`` as the
workflow's tools, and call them over MCP when the gate lets a call run.

A workflow names its upstream servers in its config (``policy["mcp_servers"]``)::

    {"mcp_servers": [{"name": "crm", "url": "http://crm.internal/mcp/",
                      "tools": {"merge_contacts": {"risk_class": "delete"}}}]}

Each imported tool becomes a ``ToolDefinition`` (its input schema as the arguments'
schema, endpoint ``mcp+<url>``). Its risk class comes from the MCP annotations
(read-only -> read, destructive -> delete, otherwise write); the config may name a
stricter class, never a looser one. A new tool is imported without a grant: it
stays off until someone grants it (at shadow), like any other tool.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction

from agents.models import RiskClass, ToolDefinition
from agents.tools.base import ToolContext, ToolError, TransientToolError, arguments_hash
from governance.audit import audit_append
from governance.models import Workflow

# The key an MCP call carries in its _meta to make a retry the same call.
META_KEY = "tenure/idempotencyKey"
# Risk classes from least to most sensitive: an MCP annotation implies one, and a
# workflow's config may tighten it, never loosen it.
RISK_RANK = [
    RiskClass.READ,
    RiskClass.WRITE,
    RiskClass.EXTERNAL_MESSAGE,
    RiskClass.MONEY,
    RiskClass.ACCESS,
    RiskClass.DELETE,
]


def risk_from_annotations(annotations: dict[str, Any] | None, configured: str = "") -> str:
    """The risk class of an upstream MCP tool: read-only -> read, destructive -> delete,
    otherwise write; a configured class applies only when it is stricter."""
    annotations = annotations or {}
    if annotations.get("destructiveHint") or annotations.get("destructive_hint"):
        implied = RiskClass.DELETE
    elif annotations.get("readOnlyHint") or annotations.get("read_only_hint"):
        implied = RiskClass.READ
    else:
        implied = RiskClass.WRITE
    if configured in RISK_RANK and RISK_RANK.index(configured) > RISK_RANK.index(implied):
        return configured
    return implied


ERR_UPSTREAM = "The upstream MCP server {url} failed: {error}"
ERR_TOOL_FAILED = "The upstream MCP tool {tool} answered an error: {text}"


def _run(coro_fn: Any) -> Any:
    import anyio

    return anyio.run(coro_fn)


def upstream_tools(url: str) -> list[dict[str, Any]]:
    """The upstream server's tools: name, description, input schema, annotations."""
    from mcp import Client

    async def fetch() -> list[dict[str, Any]]:
        async with Client(url) as client:
            listed = await client.list_tools()
        return [
            {
                "name": t.name,
                "description": t.description or "",
                "input_schema": t.input_schema,
                "annotations": t.annotations.model_dump(by_alias=True, exclude_none=True)
                if t.annotations
                else {},
            }
            for t in listed.tools
        ]

    return _run(fetch)


def mcp_tools_import(*, workflow: Workflow, actor: Any = None) -> list[ToolDefinition]:
    """Import (or refresh) the tools of every upstream server the workflow names."""
    servers = (workflow.policy or {}).get("mcp_servers") or []
    imported: list[tuple[dict[str, Any], str, str]] = []
    for server in servers:
        url = str(server["url"])
        configured = server.get("tools") or {}
        for tool in upstream_tools(url):
            risk = risk_from_annotations(
                tool["annotations"], str((configured.get(tool["name"]) or {}).get("risk_class", ""))
            )
            imported.append((tool, risk, url))
    rows = []
    with transaction.atomic():
        for tool, risk, url in imported:
            schema = {k: v for k, v in tool["input_schema"].items() if k != "title"}
            row, _ = ToolDefinition.objects.update_or_create(
                workflow=workflow,
                name=tool["name"],
                defaults={
                    "description": tool["description"][:2000],
                    "parameters": schema,
                    "risk_class": risk,
                    "endpoint_url": f"mcp+{url}",
                },
            )
            rows.append(row)
        audit_append(
            action="tools.mcp_imported",
            actor=actor,
            workflow=workflow,
            data={"tools": {r.name: r.risk_class for r in rows}},
        )
    return rows


def mcp_handler(*, tool_name: str, url: str) -> Any:
    """A handler that calls the upstream tool over MCP, the execution's idempotency key
    in the request's ``_meta``."""

    def handle(ctx: ToolContext, args: Any) -> dict[str, Any]:
        from mcp import Client

        arguments = args.model_dump(mode="json", by_alias=True)
        key = ctx.idempotency_key or f"read:{tool_name}:{arguments_hash(arguments)}"

        async def call() -> Any:
            async with Client(url) as client:
                return await client.call_tool(tool_name, arguments, meta={META_KEY: key})

        try:
            result = _run(call)
        except Exception as exc:  # transport errors: retried with the same key
            raise TransientToolError(ERR_UPSTREAM.format(url=url, error=exc)) from exc
        text = " ".join(getattr(c, "text", "") for c in result.content)
        if result.is_error:
            raise ToolError(ERR_TOOL_FAILED.format(tool=tool_name, text=text[:500]))
        if isinstance(result.structured_content, dict):
            return result.structured_content
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return parsed if isinstance(parsed, dict) else {"result": parsed}

    return handle
