"""Outside agents under Tenure: an OpenAI Agents SDK agent and a LangGraph agent (each
in its own process, with a stub model on loopback) call create_refund through the
gate API with the ``tenure_client`` package, and an MCP client (the ``mcp`` SDK's,
driven by the same stub model) calls it through the MCP gateway.

At shadow nothing executes and every call is a proposal in the queue; after the
workflow and the tool are promoted through the gate (real services, seeded
evidence, four eyes), in-cap calls execute once and out-of-cap calls wait for a
reviewer; the kill switch stops both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.evals import SuiteStatus
from agents.models import GateCall, Proposal
from demo.models import SandboxRefund
from evidence import gate as evidence_gate
from governance.api.tokens import api_token_create
from governance.models import ApiToken, AutonomyChange, AutonomyLevel, ToolGrant, Workflow
from governance.permissions import Role, roles_ensure, workflow_grant_role
from governance.services import (
    autonomy_change_approve,
    autonomy_change_request,
    workflow_pause,
)
from reviews import claims, services
from tests.agents.stub_openai import make_refund_workflow
from tests.clients.stub_model import StubModel, completion
from tests.clients.test_mcp_gateway import gateway, mcp  # noqa: F401 - gateway is a fixture
from tests.console.evidence import make_evidence
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("agent_script.py")
IN_CAP = {"order_number": "A-1001", "amount": "20.00", "reason": "Arrived broken"}
ABOVE_CAP = {"order_number": "A-1001", "amount": "60.00", "reason": "Arrived broken"}


def call(arguments: dict[str, Any]) -> dict[str, Any]:
    return {"tool": "create_refund", "arguments": arguments}


class Agent:
    """One outside agent process; its stdout is one JSON event a line."""

    def __init__(self, env: dict[str, str], mode: str, run_id: str, calls: list[dict]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), mode, run_id, json.dumps(calls)],
            cwd=tempfile.gettempdir(),  # never the project root: `agents` must be the SDK's
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def next_event(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"agent ended: {self.proc.stderr.read()[-3000:]}")
        return json.loads(line)

    def resume(self) -> None:
        self.proc.stdin.write("resume\n")
        self.proc.stdin.flush()

    def finish(self) -> list[dict[str, Any]]:
        out, err = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, err[-3000:]
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def mcp_agent(url: str, token: str, run: str, calls: list[dict]) -> list[dict[str, Any]]:
    """An MCP agent: the stub model picks each tool call, the MCP client makes it
    through Tenure's gateway, and its structured answer goes back to the model."""

    async def steps(client):
        messages: list[dict[str, Any]] = [{"role": "user", "content": "CALLS " + json.dumps(calls)}]
        seen = []
        for _ in range(10):
            reply = completion({"messages": messages})["choices"][0]["message"]
            if not reply.get("tool_calls"):
                return seen
            messages.append(reply)
            for tc in reply["tool_calls"]:
                result = await client.call_tool(
                    tc["function"]["name"], json.loads(tc["function"]["arguments"])
                )
                seen.append(result.structured_content)
                messages.append(
                    {"role": "tool", "tool_call_id": tc["id"], "content": result.content[0].text}
                )
        return seen

    return mcp(url, token, run, steps)


def answers(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["answer"] for e in events if "answer" in e]


@pytest.fixture
def stub_model() -> Iterator[StubModel]:
    stub = StubModel()
    yield stub
    stub.stop()


@pytest.fixture
def suite_green(monkeypatch):
    monkeypatch.setattr(
        evidence_gate, "regression_status", lambda workflow: SuiteStatus(True, "12/12 cases agree")
    )


def _promote(workflow: Workflow, managers: list[Any], to: str) -> None:
    """The workflow, then its create_refund grant, one step up through the gate."""
    grant = ToolGrant.objects.get(workflow=workflow, tool="create_refund")
    for target in (None, grant):
        change = autonomy_change_request(
            workflow=Workflow.objects.get(pk=workflow.pk),
            grant=ToolGrant.objects.get(pk=grant.pk) if target else None,
            to_level=to,
            actor=managers[0],
            reason="The evidence clears the gate.",
        )
        if change.status == AutonomyChange.Status.REQUESTED:
            autonomy_change_approve(change=change, actor=managers[1])  # four eyes
    grant.refresh_from_db()
    assert grant.autonomy_level == to


def test_outside_agents_are_recorded_then_gated_then_stopped(
    live_server,
    stub_model,
    suite_green,
    eager_tasks,
    gateway,  # noqa: F811 - the fixture
):
    roles = roles_ensure()
    workflow = make_refund_workflow(slug="shop", level=AutonomyLevel.SHADOW, cap="50")
    managers = []
    for name in ("mona", "max"):
        user = UserFactory(username=name)
        user.groups.add(roles[Role.MANAGER])
        workflow_grant_role(user=user, workflow=workflow, role=Role.MANAGER)
        managers.append(user)
    reviewer = UserFactory(username="rita")
    reviewer.groups.add(roles[Role.REVIEWER])
    workflow_grant_role(user=reviewer, workflow=workflow, role=Role.REVIEWER)
    _, token = api_token_create(
        name="outside-agents",
        workflows=[workflow],
        verbs=[ApiToken.Verb.ACTIONS_GATE],
        actor=None,
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", tempfile.gettempdir()),
        "PYTHONPATH": str(ROOT / "clients" / "python"),
        "TENURE_URL": live_server.url,
        "TENURE_TOKEN": token,
        "TENURE_WORKFLOW": "shop",
        "STUB_URL": stub_model.url,
        "OPENAI_AGENTS_DISABLE_TRACING": "1",
    }

    # --- shadow: every call is a proposal in the queue, nothing executes ---------------
    for mode in ("openai", "langgraph"):
        events = Agent(env, mode, f"{mode}-shadow", [call(IN_CAP)]).finish()
        assert [a["status"] for a in answers(events)] == ["recorded"], events
    mcp_url = f"{gateway}/mcp/shop/"
    assert [a["status"] for a in mcp_agent(mcp_url, token, "mcp-shadow", [call(IN_CAP)])] == [
        "recorded"
    ]
    queued = Proposal.objects.awaiting_review().filter(workflow=workflow)
    assert queued.count() == 3
    assert set(GateCall.objects.values_list("agent_run_id", flat=True)) == {
        "openai-shadow",
        "langgraph-shadow",
        "mcp-shadow",
    }
    assert SandboxRefund.objects.count() == 0

    # --- promotion through the gate, on seeded evidence ----------------------------------
    make_evidence(workflow, accepted=workflow.gate_min_decisions)
    _promote(workflow, managers, AutonomyLevel.SUPERVISED)
    # The dwell: refunds decided while the tool was supervised.
    make_evidence(
        workflow, accepted=workflow.gate_min_supervised_decisions, level=AutonomyLevel.SUPERVISED
    )
    _promote(workflow, managers, AutonomyLevel.LIMITED)

    # --- limited: in-cap executes once, out-of-cap waits for a reviewer ---------------------
    events = Agent(env, "openai", "openai-limited", [call(IN_CAP), call(ABOVE_CAP)]).finish()
    statuses = [a["status"] for a in answers(events)]
    assert statuses == ["executed", "pending"], events
    assert answers(events)[0]["result"]["amount"] == "20.00"
    assert SandboxRefund.objects.count() == 1
    held = Proposal.objects.awaiting_review().get(run__state__gate__agent_run_id="openai-limited")
    assert "above the cap" in held.verdict_rule

    graph = Agent(env, "langgraph", "graph-limited", [call(IN_CAP), call(ABOVE_CAP)])
    interrupt = graph.next_event()["interrupt"]
    assert interrupt["tenure"] == "pending"
    assert SandboxRefund.objects.count() == 2  # its in-cap refund ran, once
    waiting = Proposal.objects.get(gate_call__pk=interrupt["gate_call_id"])
    claim = claims.claim_proposal(reviewer=reviewer, proposal=waiting)
    services.proposal_decide(
        proposal_id=waiting.pk, reviewer=reviewer, claim_token=claim.token, verdict="accept"
    )
    graph.resume()
    events = graph.finish()
    assert [a["status"] for a in answers(events)] == ["executed", "executed"], events
    # The resumed node asked the gate again for its first call: same key, no second refund.
    assert SandboxRefund.objects.count() == 3
    assert sorted(str(r.amount) for r in SandboxRefund.objects.all()) == [
        "20.00",
        "20.00",
        "60.00",
    ]
    small = {**IN_CAP, "amount": "5.00"}
    seen = mcp_agent(mcp_url, token, "mcp-limited", [call(small), call(ABOVE_CAP)])
    assert [a["status"] for a in seen] == ["executed", "pending"]
    assert seen[0]["result"]["amount"] == "5.00"
    assert SandboxRefund.objects.count() == 4
    assert Proposal.objects.awaiting_review().filter(pk=seen[1]["proposal_id"]).exists()

    # --- the kill switch stops both ---------------------------------------------------------
    calls_before = GateCall.objects.count()
    workflow_pause(workflow=workflow, actor=managers[0], reason="incident")
    events = Agent(env, "openai", "openai-paused", [call(IN_CAP)]).finish()
    assert [a["status"] for a in answers(events)] == ["refused"], events
    events = Agent(env, "langgraph", "graph-paused", [call(IN_CAP)]).finish()
    assert events[0]["refused"] == "workflow_paused", events
    seen = mcp_agent(mcp_url, token, "mcp-paused", [call(IN_CAP)])
    assert [a["status"] for a in seen] == ["refused"]
    assert seen[0]["code"] == "workflow_paused"
    assert GateCall.objects.count() == calls_before
    assert SandboxRefund.objects.count() == 4
