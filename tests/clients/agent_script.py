"""An outside agent, run in its own process (no project root on sys.path: the
``openai-agents`` package's top-level ``agents`` module is the SDK's here).

    python agent_script.py openai|langgraph RUN_ID 'CALLS-JSON'

Environment: TENURE_URL, TENURE_TOKEN, TENURE_WORKFLOW, STUB_URL. Prints one JSON
line per event: the gate's answers as the agent saw them; the LangGraph agent
prints its interrupt and waits for a line on stdin before it resumes."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from tenure_client import GateRefused, TenureClient

REFUND_SCHEMA = {
    "type": "function",
    "function": {
        "name": "create_refund",
        "description": "Refund part or all of an order.",
        "parameters": {
            "type": "object",
            "properties": {
                "order_number": {"type": "string"},
                "amount": {"type": "string"},
                "reason": {"type": "string"},
            },
            "required": ["order_number", "amount", "reason"],
        },
    },
}


def emit(event: dict[str, Any]) -> None:
    print(json.dumps(event, default=str), flush=True)


def create_refund(order_number: str, amount: str, reason: str) -> str:
    """Refund part or all of an order to the original payment method."""
    raise RuntimeError("Tenure runs this tool; its local body never runs.")


def run_openai(client: TenureClient, run_id: str, calls: list[dict[str, Any]]) -> None:
    from openai import AsyncOpenAI
    from tenure_client.openai_agents import gated_tool

    from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)
    model = OpenAIChatCompletionsModel(
        model="stub", openai_client=AsyncOpenAI(base_url=os.environ["STUB_URL"], api_key="x")
    )
    agent = Agent(
        name="refunder",
        instructions="Refund what the customer asks for.",
        tools=[gated_tool(client, create_refund, agent_run_id=run_id)],
        model=model,
    )
    result = Runner.run_sync(agent, "CALLS " + json.dumps(calls))
    for item in result.new_items:
        if item.type == "tool_call_output_item":
            emit({"answer": json.loads(item.output)})
    emit({"final": result.final_output})


def run_langgraph(client: TenureClient, run_id: str, calls: list[dict[str, Any]]) -> None:
    from typing import TypedDict

    from langgraph.checkpoint.memory import MemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command
    from openai import OpenAI
    from tenure_client.langgraph import gated_call

    model = OpenAI(base_url=os.environ["STUB_URL"], api_key="x")

    class State(TypedDict):
        messages: list[dict[str, Any]]
        answers: list[dict[str, Any]]

    def act(state: State) -> dict[str, Any]:
        messages = list(state["messages"])
        answers: list[dict[str, Any]] = []
        for _ in range(10):
            reply = (
                model.chat.completions.create(
                    model="stub", messages=messages, tools=[REFUND_SCHEMA]
                )
                .choices[0]
                .message
            )
            if not reply.tool_calls:
                break
            messages.append(reply.model_dump(exclude_none=True))
            for tc in reply.tool_calls:
                answer = gated_call(
                    client,
                    tc.function.name,
                    json.loads(tc.function.arguments),
                    agent_run_id=run_id,
                    step_id=tc.id,
                )
                output = answer.as_tool_output()
                answers.append(output)
                messages.append(
                    {"role": "tool", "tool_call_id": tc.id, "content": json.dumps(output)}
                )
        return {"messages": messages, "answers": answers}

    builder = StateGraph(State)
    builder.add_node("act", act)
    builder.add_edge(START, "act")
    builder.add_edge("act", END)
    graph = builder.compile(checkpointer=MemorySaver())
    config = {"configurable": {"thread_id": run_id}}
    state: Any = {
        "messages": [{"role": "user", "content": "CALLS " + json.dumps(calls)}],
        "answers": [],
    }
    while True:
        out = graph.invoke(state, config)
        interrupts = out.get("__interrupt__") or []
        if not interrupts:
            break
        emit({"interrupt": interrupts[0].value})
        sys.stdin.readline()  # a reviewer decides meanwhile
        state = Command(resume={"wait": 10})
    for answer in out["answers"]:
        emit({"answer": answer})
    emit({"final": "done"})


def main() -> int:
    mode, run_id, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    client = TenureClient()
    try:
        if mode == "openai":
            run_openai(client, run_id, calls)
        else:
            run_langgraph(client, run_id, calls)
    except GateRefused as exc:
        emit({"refused": exc.code, "message": exc.message})
    return 0


if __name__ == "__main__":
    sys.exit(main())
