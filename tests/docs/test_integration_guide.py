"""docs/INTEGRATION.md's curl examples, run for real against the live app.

Every ```sh block is one example: it runs in bash, as written, with
$TENURE_URL and $TENURE_TOKEN set, and every HTTP status curl sees must be the
one its ``# expect: NNN`` line documents. A curl config file (not an edit of
the example) makes curl report each status on stderr.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings

from agents import states
from agents.models import Escalation, Run, WorkItem
from governance.api.tokens import api_token_create
from governance.models import ApiToken
from reviews.models import Decision, HumanAction, ItemOutcome
from tests.factories import (
    EscalationFactory,
    ProposalFactory,
    RunFactory,
    ToolGrantFactory,
    WorkflowFactory,
    WorkItemFactory,
)

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "INTEGRATION.md"
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXPECT = re.compile(r"^# expect: (\d{3})$", re.MULTILINE)
STATUS = re.compile(r"^tenure-status:(\d{3})$", re.MULTILINE)
METRICS_TOKEN = "scrape-token-for-the-guide"
CURLRC = 'write-out = "%{stderr}tenure-status:%{http_code}\\n"\nsilent\nshow-error\n'
REPORT_ARGS = {"order_number": "A-1001", "amount": "42.00", "reason": "Arrived broken"}
# What the agent proposed on the items the report examples name (the worker would have
# run it): nothing at all on T-1004, which it escalated.
AGENT_PLANS = {
    "T-1001": [("create_refund", REPORT_ARGS)],
    "T-1003": [
        ("create_refund", {"order_number": "A-1003", "amount": "30.00", "reason": "Wrong size"})
    ],
    "T-1004": [],
}
REPORTED_ITEM = re.compile(r'"external_id": "(T-\d+)"')


def guide_examples() -> list[tuple[int, str]]:
    examples = []
    for block in BLOCK.findall(GUIDE.read_text()):
        expected = EXPECT.findall(block)
        assert len(expected) == 1, f"each example documents one status:\n{block}"
        examples.append((int(expected[0]), block))
    return examples


def test_every_example_targets_the_configured_tenure_and_documents_a_status():
    examples = guide_examples()
    assert len(examples) >= 15
    for _, block in examples:
        assert "curl" in block
        for url in re.findall(r"https?://\S+", block):
            pytest.fail(f"examples use $TENURE_URL, not a literal host: {url}")


def _seed() -> tuple[str, object]:
    refunds = WorkflowFactory(slug="refunds", name="Refunds")
    WorkflowFactory(slug="access-requests", name="Access requests")
    _, token = api_token_create(
        name="billing", workflows=[refunds], verbs=ApiToken.Verb.values, actor=None
    )
    for tool in ("create_refund", "draft_customer_reply"):
        ToolGrantFactory(workflow=refunds, tool=tool)
    # Two proposals the agent made earlier, so the listing has a second page.
    run = RunFactory(work_item=WorkItemFactory(workflow=refunds, external_id="T-0999"))
    ProposalFactory(run=run, sequence=1)
    ProposalFactory(run=run, sequence=2, tool="send_customer_message", arguments={"text": "Hi"})
    return token, refunds


def _agent_ran_on(external_id: str, workflow) -> None:
    """What the worker would have done: the agent's pending proposals on the item, or
    an escalation when it proposed nothing."""
    item = WorkItem.objects.get(workflow=workflow, external_id=external_id)
    if item.runs.exists():
        return
    plan = AGENT_PLANS[external_id]
    states.work_item_move(item.pk, to=WorkItem.Status.RUNNING)
    if not plan:
        run = RunFactory(
            work_item=item, status=Run.Status.ESCALATED, stop_reason=Run.StopReason.NO_ACTION
        )
        EscalationFactory(work_item=item, run=run, reason=Escalation.Reason.HARD_CASE)
        states.work_item_move(item.pk, to=WorkItem.Status.ESCALATED)
        return
    run = RunFactory(work_item=item)
    for sequence, (tool, arguments) in enumerate(plan, start=1):
        ProposalFactory(run=run, sequence=sequence, tool=tool, arguments=dict(arguments))
    states.work_item_move(item.pk, to=WorkItem.Status.AWAITING_REVIEW)


def _purge_agent_queue() -> None:
    # Creating items queued run_agent tasks; no worker runs in this test.
    from console.celery import app

    with contextlib.suppress(Exception), app.connection_for_write() as conn:
        conn.default_channel.queue_purge(settings.CELERY_TASK_DEFAULT_QUEUE)


@pytest.mark.django_db(transaction=True)
def test_the_integration_guide_runs_as_documented(live_server, tmp_path, settings):
    assert urlparse(live_server.url).hostname in ("localhost", "127.0.0.1")
    settings.TENURE_METRICS_TOKEN = METRICS_TOKEN
    token, refunds = _seed()
    (tmp_path / ".curlrc").write_text(CURLRC)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "NO_PROXY": "127.0.0.1,localhost",
        "TENURE_URL": live_server.url,
        "TENURE_TOKEN": token,
        "TENURE_METRICS_TOKEN": METRICS_TOKEN,
    }
    try:
        for expected, block in guide_examples():
            if "/actions/report" in block:
                for external_id in REPORTED_ITEM.findall(block):
                    _agent_ran_on(external_id, refunds)
            done = subprocess.run(
                ["bash", "-c", "set -euo pipefail\n" + block],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            statuses = [int(s) for s in STATUS.findall(done.stderr)]
            assert done.returncode == 0, f"{block}\nstderr: {done.stderr}"
            assert statuses, f"no HTTP request was made:\n{block}"
            assert set(statuses) == {expected}, f"{block}\nstatuses {statuses}\n{done.stdout}"
    finally:
        _purge_agent_queue()

    # What the examples did is really in Tenure.
    assert set(WorkItem.objects.filter(workflow=refunds).values_list("external_id", flat=True)) == {
        "T-0999",
        "T-1001",
        "T-1003",
        "T-1004",
        "6f1c2d9e-5b7a-4c1e-9a53-0f6f2b8d1e42",
        "OLD-0001",
        "OLD-0002",
    }
    item = WorkItem.objects.get(external_id="T-1001")
    assert item.proposals.get().decision.verdict == "accept"
    assert ItemOutcome.objects.get(work_item=item).did_nothing is False
    # Reported as the human went: the reply is missed once, the refund is an edit.
    partial = WorkItem.objects.get(external_id="T-1003")
    assert partial.proposals.get().decision.diff == {"amount": ["30.00", "25.00"]}
    assert HumanAction.objects.get(work_item=partial).tool == "draft_customer_reply"
    escalated = WorkItem.objects.get(external_id="T-1004")
    assert ItemOutcome.objects.get(work_item=escalated).did_nothing is True
    assert escalated.escalations.get().status == Escalation.Status.RESOLVED
    imported = Decision.objects.get(proposal__work_item__external_id="OLD-0001")
    assert (imported.kind, imported.verdict) == ("imported", "accept")
    assert imported.created_at.isoformat() == "2026-01-15T10:30:00+00:00"
    assert ItemOutcome.objects.get(work_item__external_id="OLD-0002").imported is True
    # The export holds the reported decisions and the imported one, marked as such.
    assert (tmp_path / "refunds-decisions.jsonl").read_text().count("\n") == 3
    csv_lines = (tmp_path / "refunds-decisions.csv").read_text().splitlines()
    assert csv_lines[0].startswith("decision_id,")
    assert len(csv_lines) == 4
    assert sum(",imported," in line for line in csv_lines) == 1
