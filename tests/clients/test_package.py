"""The client package: installable with pip, and its decorator against a live server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo.models import SandboxRefund
from governance.api.tokens import api_token_create
from governance.models import ApiToken, AutonomyLevel
from tests.agents.stub_openai import make_refund_workflow

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "python"


def test_the_client_installs_with_pip_offline_and_imports(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--target", str(target), str(CLIENT)],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    assert (target / "tenure_client" / "openai_agents.py").exists()
    out = subprocess.run(
        [sys.executable, "-c", "import tenure_client; print(tenure_client.TenureClient.__name__)"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)},
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip() == "TenureClient"


@pytest.mark.django_db(transaction=True)
def test_a_wrapped_tool_returns_the_result_when_executed_and_raises_otherwise(live_server):
    sys.path.insert(0, str(CLIENT))
    try:
        from tenure_client import GatePending, TenureClient
    finally:
        sys.path.remove(str(CLIENT))
    workflow = make_refund_workflow(slug="shop", level=AutonomyLevel.LIMITED, cap="50")
    _, token = api_token_create(
        name="script", workflows=[workflow], verbs=[ApiToken.Verb.ACTIONS_GATE], actor=None
    )
    client = TenureClient(live_server.url, token=token, workflow="shop")

    @client.tool(agent_run_id="script-1")
    def create_refund(order_number: str, amount: str, reason: str = "Arrived broken") -> dict:
        raise AssertionError("Tenure runs the tool; the body never runs")

    result = create_refund("A-1001", "10.00")
    assert result["amount"] == "10.00"
    assert create_refund("A-1001", "10.00") == result  # the same call: the same answer
    assert SandboxRefund.objects.count() == 1
    with pytest.raises(GatePending) as held:
        create_refund("A-1001", "70.00")
    assert "above the cap" in held.value.answer.rule
    assert SandboxRefund.objects.count() == 1
    client.close()
