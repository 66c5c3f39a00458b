"""The OpenAI Agents SDK under Tenure's gate: a function tool whose every call goes
through the gate first. The model gets the tool's result when Tenure executed it,
and otherwise a short structured note (recorded / pending / denied) instead."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from agents import FunctionTool, function_tool
from tenure_client import GateRefused, TenureClient


def gated_tool(
    client: TenureClient,
    func: Callable[..., Any],
    *,
    agent_run_id: str | Callable[[], str],
    wait: float = 0.0,
    **function_tool_kwargs: Any,
) -> FunctionTool:
    """``func`` gives the tool's name, description and argument schema (as
    ``agents.function_tool`` reads them); its body never runs: Tenure runs the tool
    through its own connector when the level allows. ``wait``: hold a pending call
    up to that many seconds for a reviewer (bounded long-poll)."""
    base = function_tool(func, **function_tool_kwargs)

    async def invoke(ctx: Any, input_json: str) -> str:
        arguments = json.loads(input_json or "{}")
        run = agent_run_id() if callable(agent_run_id) else agent_run_id
        try:
            answer = await asyncio.to_thread(
                client.gate,
                base.name,
                arguments,
                agent_run_id=run,
                step_id=str(getattr(ctx, "tool_call_id", "") or ""),
                wait=wait,
            )
        except GateRefused as exc:  # the kill switch: tell the model, act on nothing
            return json.dumps({"status": "refused", "executed": False, "note": exc.message})
        return json.dumps(answer.as_tool_output(), default=str)

    return FunctionTool(
        name=base.name,
        description=base.description,
        params_json_schema=base.params_json_schema,
        on_invoke_tool=invoke,
        strict_json_schema=base.strict_json_schema,
    )
