"""LangGraph under Tenure's gate: a node asks the gate, and a pending call
interrupts the graph (``langgraph.types.interrupt``) until a reviewer decides.

Resume with ``Command(resume={"wait": seconds})``: the node runs again from its
start, asks the gate again with the same idempotency key (the same call, never a
second one) and gets the settled answer."""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from tenure_client import PENDING, GateAnswer, TenureClient


def gated_call(
    client: TenureClient,
    tool: str,
    arguments: dict[str, Any],
    *,
    agent_run_id: str,
    step_id: str,
    wait: float = 0.0,
) -> GateAnswer:
    """Call inside a LangGraph node. Returns the gate's answer (executed, recorded,
    denied, rejected); a pending one interrupts the graph with the call's id."""
    answer = client.gate(tool, arguments, agent_run_id=agent_run_id, step_id=step_id, wait=wait)
    if answer.status != PENDING:
        return answer
    resume = interrupt(
        {
            "tenure": PENDING,
            "gate_call_id": answer.id,
            "tool": tool,
            "arguments": arguments,
            "rule": answer.rule,
        }
    )
    seconds = float(resume.get("wait", 0)) if isinstance(resume, dict) else 0.0
    return client.poll(answer.id, wait=seconds)
