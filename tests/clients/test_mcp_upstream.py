"""Upstream MCP servers behind the gateway: their tools/list imported with risk
classes from the annotations (config tightens, never loosens), and a call the gate
lets run goes to the upstream tool once, over MCP."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import uvicorn
from mcp import types
from mcp.server.mcpserver import MCPServer

from agents.mcp_upstream import mcp_tools_import
from agents.models import RiskClass, ToolDefinition
from governance.api.tokens import api_token_create
from governance.models import ApiToken, AutonomyLevel, ToolGrant, Workflow
from tests.clients.test_mcp_gateway import gateway, mcp  # noqa: F401 - gateway is a fixture

pytestmark = pytest.mark.django_db(transaction=True)

CALLS: Counter = Counter()


def upstream_app():
    server = MCPServer("crm")

    @server.tool(annotations=types.ToolAnnotations(read_only_hint=True))
    def lookup_contact(email: str) -> dict:
        """Find a contact by email."""
        return {"email": email, "id": 7}

    @server.tool(annotations=types.ToolAnnotations(destructive_hint=True))
    def merge_records(keep: int, drop: int) -> dict:
        """Merge two contacts into one."""
        CALLS["merge_records"] += 1
        return {"kept": keep}

    @server.tool()
    def tag_contact(contact: int, tag: str) -> dict:
        """Tag a contact."""
        CALLS["tag_contact"] += 1
        return {"contact": contact, "tag": tag}

    return server.streamable_http_app(stateless_http=True, json_response=True)


@pytest.fixture
def upstream() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(upstream_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    thread.join(timeout=10)


def test_upstream_tools_are_imported_gated_and_called_once(upstream, gateway):  # noqa: F811
    CALLS.clear()
    workflow = Workflow.objects.create(
        slug="crm",
        name="CRM",
        autonomy_level=AutonomyLevel.LIMITED,
        policy={
            "mcp_servers": [
                {
                    "name": "crm",
                    "url": upstream,
                    # Tighter than the annotations say: applied. Looser: ignored.
                    "tools": {
                        "lookup_contact": {"risk_class": "external_message"},
                        "merge_records": {"risk_class": "read"},
                    },
                }
            ]
        },
    )
    rows = {r.name: r for r in mcp_tools_import(workflow=workflow)}
    assert rows["lookup_contact"].risk_class == RiskClass.EXTERNAL_MESSAGE
    assert rows["merge_records"].risk_class == RiskClass.DELETE
    assert rows["tag_contact"].risk_class == RiskClass.WRITE
    assert ToolDefinition.objects.filter(workflow=workflow).count() == 3
    ToolGrant.objects.create(workflow=workflow, tool="merge_records", autonomy_level="limited")
    ToolGrant.objects.create(workflow=workflow, tool="tag_contact", autonomy_level="limited")
    _, token = api_token_create(
        name="ide-agent", workflows=[workflow], verbs=[ApiToken.Verb.ACTIONS_GATE], actor=None
    )

    async def steps(client):
        listed = await client.list_tools()
        tagged = await client.call_tool("tag_contact", {"contact": 7, "tag": "vip"})
        again = await client.call_tool("tag_contact", {"contact": 7, "tag": "vip"})
        merged = await client.call_tool("merge_records", {"keep": 7, "drop": 8})
        return listed, tagged, again, merged

    listed, tagged, again, merged = mcp(f"{gateway}/mcp/crm/", token, "ide-1", steps)
    names = {t.name for t in listed.tools}
    assert {"merge_records", "tag_contact"} <= names
    assert "lookup_contact" not in names  # imported, not granted: off
    assert tagged.structured_content["status"] == "executed"
    assert tagged.structured_content["result"] == {"contact": 7, "tag": "vip"}
    assert again.structured_content["id"] == tagged.structured_content["id"]
    # A deletion always needs a human, whatever the level.
    assert merged.structured_content["status"] == "pending", merged.structured_content
    assert CALLS["tag_contact"] == 1
    assert CALLS["merge_records"] == 0
