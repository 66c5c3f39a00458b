"""The MCP gateway with a real MCP client (the ``mcp`` SDK's) over streamable HTTP:
shadow records, limited executes in cap and holds above it, a held call polls,
edited arguments never ride on an approval, and the kill switch refuses."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agents.mcp_gateway import POLL_TOOL, gateway_app
from agents.mcp_upstream import META_KEY, risk_from_annotations
from agents.models import GateCall, Proposal, RiskClass
from agents.services import proposal_execute
from demo.models import SandboxRefund
from governance.api.tokens import api_token_create
from governance.models import ApiToken, AutonomyLevel, Workflow
from governance.permissions import Role, roles_ensure, workflow_grant_role
from governance.services import workflow_pause
from reviews import claims, services
from tests.agents.stub_openai import make_refund_workflow
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

IN_CAP = {"order_number": "A-1001", "amount": "20.00", "reason": "Arrived broken"}
ABOVE_CAP = {"order_number": "A-1001", "amount": "60.00", "reason": "Arrived broken"}


@pytest.fixture
def gateway() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(gateway_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def mcp(url: str, token: str, run: str, steps) -> Any:
    async def main() -> Any:
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}", "X-Agent-Run-Id": run}, timeout=60
        )
        async with Client(streamable_http_client(url, http_client=http)) as client:
            return await steps(client)

    return anyio.run(main)


def _setup(level: str) -> tuple[Workflow, str]:
    workflow = make_refund_workflow(slug="shop", level=level, cap="50")
    _, token = api_token_create(
        name="mcp-agent", workflows=[workflow], verbs=[ApiToken.Verb.ACTIONS_GATE], actor=None
    )
    return workflow, token


def test_annotations_map_to_risk_classes_and_config_only_tightens():
    assert risk_from_annotations({"readOnlyHint": True}) == RiskClass.READ
    assert risk_from_annotations({"destructiveHint": True}) == RiskClass.DELETE
    assert risk_from_annotations({}) == RiskClass.WRITE
    assert risk_from_annotations({"readOnlyHint": True}, RiskClass.MONEY) == RiskClass.MONEY
    assert risk_from_annotations({"destructiveHint": True}, RiskClass.READ) == RiskClass.DELETE


def test_a_shadow_call_through_mcp_is_recorded_not_executed(gateway):
    _, token = _setup(AutonomyLevel.SHADOW)

    async def steps(client):
        tools = await client.list_tools()
        result = await client.call_tool("create_refund", IN_CAP)
        return tools, result

    tools, result = mcp(f"{gateway}/mcp/shop/", token, "mcp-run-1", steps)
    by_name = {t.name: t for t in tools.tools}
    assert {"create_refund", "get_order", POLL_TOOL} <= set(by_name)
    assert by_name["get_order"].annotations.read_only_hint is True
    assert by_name["create_refund"].annotations.destructive_hint is True
    assert result.structured_content["status"] == "recorded"
    assert "not executed" in result.content[0].text
    assert result.is_error is False
    call = GateCall.objects.get()
    assert call.channel == GateCall.Channel.MCP
    assert call.agent_run_id == "mcp-run-1"
    assert Proposal.objects.awaiting_review().count() == 1
    assert SandboxRefund.objects.count() == 0


def test_a_token_without_the_workflow_is_refused(gateway):
    _setup(AutonomyLevel.SHADOW)
    response = httpx2.post(
        f"{gateway}/mcp/shop/", json={}, headers={"Authorization": "Bearer tnr_nope"}
    )
    assert response.status_code == 403
    assert httpx2.post(f"{gateway}/mcp/shop/", json={}).status_code == 401


def test_limited_executes_in_cap_holds_above_and_binds_the_approval_to_the_arguments(gateway):
    workflow, token = _setup(AutonomyLevel.LIMITED)
    roles = roles_ensure()
    reviewer = UserFactory(username="rita")
    reviewer.groups.add(roles[Role.REVIEWER])
    workflow_grant_role(user=reviewer, workflow=workflow, role=Role.REVIEWER)
    url = f"{gateway}/mcp/shop/"

    async def first(client):
        done = await client.call_tool("create_refund", IN_CAP)
        again = await client.call_tool("create_refund", IN_CAP)  # a retry: the same call
        held = await client.call_tool(
            "create_refund", ABOVE_CAP, meta={META_KEY: "refund-above-cap"}
        )
        return done, again, held

    done, again, held = mcp(url, token, "mcp-run-2", first)
    assert done.structured_content["status"] == "executed"
    assert done.structured_content["result"]["amount"] == "20.00"
    assert again.structured_content["id"] == done.structured_content["id"]
    assert SandboxRefund.objects.count() == 1
    assert held.structured_content["status"] == "pending"
    assert POLL_TOOL in held.content[0].text

    proposal = Proposal.objects.get(gate_call__idempotency_key="refund-above-cap")
    claim = claims.claim_proposal(reviewer=reviewer, proposal=proposal)
    services.proposal_decide(
        proposal_id=proposal.pk, reviewer=reviewer, claim_token=claim.token, verdict="accept"
    )

    async def after(client):
        # The approved call, its amount edited on the way: the same key is refused ...
        edited = await client.call_tool(
            "create_refund", {**ABOVE_CAP, "amount": "99.00"}, meta={META_KEY: "refund-above-cap"}
        )
        # ... and under a new key it is a new call that waits for its own approval.
        fresh = await client.call_tool("create_refund", {**ABOVE_CAP, "amount": "99.00"})
        polled = await client.call_tool(
            POLL_TOOL, {"call_id": held.structured_content["id"], "wait": 0}
        )
        return edited, fresh, polled

    proposal_execute(proposal_id=proposal.pk)  # what the worker does after the approval
    edited, fresh, polled = mcp(url, token, "mcp-run-2", after)
    assert edited.is_error is True
    assert edited.structured_content["code"] == "conflict"
    assert polled.structured_content["status"] == "executed"
    assert polled.structured_content["arguments"]["amount"] == "60.00"
    assert fresh.structured_content["status"] == "pending"
    assert fresh.structured_content["id"] != held.structured_content["id"]
    amounts = sorted(str(r.amount) for r in SandboxRefund.objects.all())
    assert "99.00" not in amounts
    assert "60.00" in amounts


def test_the_kill_switch_refuses_mcp_calls(gateway):
    workflow, token = _setup(AutonomyLevel.LIMITED)
    workflow_pause(workflow=workflow, actor="ops", reason="incident")

    async def steps(client):
        return await client.call_tool("create_refund", IN_CAP)

    result = mcp(f"{gateway}/mcp/shop/", token, "mcp-run-3", steps)
    assert result.is_error is True
    assert result.structured_content["code"] == "workflow_paused"
    assert GateCall.objects.count() == 0
    assert SandboxRefund.objects.count() == 0
