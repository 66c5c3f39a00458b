"""docs/BRING-YOUR-OWN-AGENT.md, run for real and in order.

Every ```sh block runs in bash, as written, in one scratch directory, against the
test database (``manage.py`` commands) and the live server (``curl``, the client
package). A block must exit 0, and each HTTP status its curls see must be the one
its ``# expect: NNN`` line documents. Where the guide says a human acts in the
console (reviewers build evidence, managers promote, ops pause), the test does it
through the same services before the block that needs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from agents.evals import SuiteStatus
from agents.models import GateCall
from evidence import gate as evidence_gate
from governance.models import AutonomyChange, AutonomyLevel, ToolGrant, Workflow
from governance.permissions import Role, roles_ensure, workflow_grant_role
from governance.services import autonomy_change_approve, autonomy_change_request, workflow_pause
from tests.agents.test_http_connector import SECRET, Receiver
from tests.console.evidence import make_evidence
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "BRING-YOUR-OWN-AGENT.md"
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXPECT = re.compile(r"^# expect: (\d{3})$", re.MULTILINE)
STATUS = re.compile(r"^tenure-status:(\d{3})$", re.MULTILINE)
CURLRC = 'write-out = "%{stderr}tenure-status:%{http_code}\\n"\nsilent\nshow-error\n'


def guide_blocks() -> list[str]:
    return BLOCK.findall(GUIDE.read_text())


def test_the_guide_uses_variables_not_hosts_and_curls_document_their_status():
    blocks = guide_blocks()
    assert len(blocks) >= 8
    for block in blocks:
        assert not re.findall(r"https?://\S+", block), block
        if "curl" in block:
            assert len(EXPECT.findall(block)) == 1, block


def _promote(workflow: Workflow, managers: list, to: str) -> None:
    grant = ToolGrant.objects.get(workflow=workflow, tool="issue_credit")
    for target in (None, grant):
        change = autonomy_change_request(
            workflow=Workflow.objects.get(pk=workflow.pk),
            grant=ToolGrant.objects.get(pk=grant.pk) if target else None,
            to_level=to,
            actor=managers[0],
            reason="The evidence clears the gate.",
        )
        if change.status == AutonomyChange.Status.REQUESTED:
            autonomy_change_approve(change=change, actor=managers[1])


def _earn_autonomy() -> None:
    """Section 5: reviewers' decisions as evidence, then two promotions (four eyes)."""
    roles = roles_ensure()
    workflow = Workflow.objects.get(slug="billing-agent")
    managers = []
    for name in ("mona", "max"):
        user = UserFactory(username=name)
        user.groups.add(roles[Role.MANAGER])
        workflow_grant_role(user=user, workflow=workflow, role=Role.MANAGER)
        managers.append(user)
    make_evidence(workflow, tool="issue_credit", accepted=workflow.gate_min_decisions)
    _promote(workflow, managers, AutonomyLevel.SUPERVISED)
    # The dwell: calls decided while the tool was supervised.
    make_evidence(
        workflow,
        tool="issue_credit",
        accepted=workflow.gate_min_supervised_decisions,
        level=AutonomyLevel.SUPERVISED,
    )
    _promote(workflow, managers, AutonomyLevel.LIMITED)


@pytest.mark.django_db(transaction=True)
def test_the_bring_your_own_agent_guide_runs_as_documented(live_server, tmp_path, monkeypatch):
    monkeypatch.setattr(
        evidence_gate, "regression_status", lambda workflow: SuiteStatus(True, "12/12 cases agree")
    )
    receiver = Receiver()
    receiver.thread.start()
    (tmp_path / ".curlrc").write_text(CURLRC)
    (tmp_path / "manage.py").symlink_to(ROOT / "manage.py")
    db = connection.settings_dict
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "console.settings_test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TENURE_TEST_DB": db["NAME"],
        "TENURE_URL": live_server.url,
        "TOOL_URL": receiver.url,
        "TOOL_SECRET": SECRET,
        "CLIENT_DIR": str(ROOT / "clients" / "python"),
    }
    try:
        for block in guide_blocks():
            if '"status": "executed"' in block:
                _earn_autonomy()
            if "workflow_paused" in block:
                workflow_pause(
                    workflow=Workflow.objects.get(slug="billing-agent"),
                    actor="ops",
                    reason="incident",
                )
            done = subprocess.run(
                ["bash", "-c", "set -euo pipefail\n" + block],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, (
                f"{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            )
            expected = EXPECT.findall(block)
            if expected:
                seen = STATUS.findall(done.stderr)
                assert seen, f"no curl status seen:\n{block}\n{done.stderr}"
                assert seen[-1] == expected[0], f"{block}\n{done.stdout}\n{done.stderr}"
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
    # What the guide promised: two recorded calls at shadow, one executed once at
    # limited (its endpoint applied it once), one waiting; nothing after the pause.
    calls = GateCall.objects.filter(workflow__slug="billing-agent")
    assert calls.count() == 4
    assert len(receiver.applied) == 1
    (applied,) = receiver.applied.values()
    assert applied["arguments"] == {"account": "AC-1003", "amount": 20}
