"""'Explain this action': one page, in plain words, for any proposal or execution."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from agents.models import Proposal, Step
from governance.models import AutonomyLevel
from reviews.models import Decision, RejectReason
from tests.console.factories import DecisionFactory, ExecutionFactory, StepFactory
from tests.factories import ProposalFactory, RunFactory, ToolGrantFactory, WorkItemFactory


def explain_url(proposal: Proposal) -> str:
    return reverse("explain-proposal", args=[proposal.pk])


def _trace(run) -> None:
    StepFactory(run=run, index=1, kind=Step.Kind.MODEL_CALL, name="plan", input={}, output={})
    StepFactory(run=run, index=2, kind=Step.Kind.TOOL_CALL, name="lookup_order")
    StepFactory(run=run, index=3, kind=Step.Kind.POLICY, name="policy_check")


@pytest.fixture
def approved(workflow, reviewer):
    workflow.autonomy_level = AutonomyLevel.SUPERVISED
    workflow.save()
    ToolGrantFactory(workflow=workflow, tool="create_refund", caps={"amount": 100})
    item = WorkItemFactory(workflow=workflow, external_id="ZD-4411", title="Broken kettle")
    run = RunFactory(work_item=item, autonomy_level=AutonomyLevel.SUPERVISED)
    _trace(run)
    proposal = ProposalFactory(
        run=run,
        autonomy_level=AutonomyLevel.SUPERVISED,
        verdict=Proposal.Verdict.NEEDS_APPROVAL,
        verdict_rule="Refunds above $0 need approval at supervised.",
        status=Proposal.Status.EXECUTED,
    )
    DecisionFactory(proposal=proposal, reviewer=reviewer, verdict=Decision.Verdict.ACCEPT)
    Proposal.objects.filter(pk=proposal.pk).update(status=Proposal.Status.EXECUTED)
    execution = ExecutionFactory(proposal=proposal, auto=False)
    return proposal, execution


@pytest.fixture
def auto_executed(workflow):
    workflow.autonomy_level = AutonomyLevel.LIMITED
    workflow.save()
    ToolGrantFactory(
        workflow=workflow,
        tool="create_refund",
        autonomy_level=AutonomyLevel.LIMITED,
        caps={"amount": 100},
    )
    run = RunFactory(work_item__workflow=workflow, autonomy_level=AutonomyLevel.LIMITED)
    _trace(run)
    proposal = ProposalFactory(
        run=run,
        autonomy_level=AutonomyLevel.LIMITED,
        verdict=Proposal.Verdict.ALLOW,
        verdict_rule="Refunds up to $100 run automatically at limited.",
        status=Proposal.Status.EXECUTED,
        auto_executed=True,
    )
    execution = ExecutionFactory(
        proposal=proposal, auto=True, result={"refund_id": "R-77", "amount": Decimal("42.00")}
    )
    return proposal, execution


def test_explains_an_approved_action(client_for, manager, approved):
    proposal, execution = approved
    response = client_for(manager).get(explain_url(proposal))
    html = response.content.decode()
    assert response.status_code == 200
    assert "ZD-4411" in html
    assert "Broken kettle" in html
    assert "Refunds above $0 need approval at supervised." in html
    assert ">needs approval</strong>, by the rule" in html
    assert "effective autonomy level was <strong>Supervised</strong>" in html
    assert "A human decided: <strong>rita</strong> <strong>accepted</strong> it" in html
    for step in ("plan", "lookup_order", "policy_check"):
        assert f"<code>{step}</code>" in html
    assert f'id="execution-{execution.pk}"' in html
    assert "(after approval)" in html
    assert "current</em> caps" in html
    assert "amount ≤ 100" in html


def test_explains_an_auto_executed_action(client_for, manager, auto_executed):
    proposal, execution = auto_executed
    html = client_for(manager).get(explain_url(proposal)).content.decode()
    assert "No human approved it" in html
    assert "executed automatically</strong> under the <code>create_refund</code> grant" in html
    assert "level <strong>Limited</strong>" in html
    assert "Refunds up to $100 run automatically at limited." in html
    assert "R-77" in html
    assert "(automatic)" in html
    assert "Caps history is not versioned yet" in html


def test_execution_page_redirects_to_its_proposal(client_for, manager, auto_executed):
    proposal, execution = auto_executed
    response = client_for(manager).get(reverse("explain-execution", args=[execution.pk]))
    assert response.status_code == 302
    assert response["Location"] == f"{explain_url(proposal)}#execution-{execution.pk}"


def test_sampled_critical_rejection_is_flagged(client_for, manager, auto_executed, reviewer):
    proposal, _ = auto_executed
    DecisionFactory(
        proposal=proposal,
        reviewer=reviewer,
        kind=Decision.Kind.SAMPLE,
        verdict=Decision.Verdict.REJECT,
        reason=RejectReason.UNSAFE,
        reason_text="Refunded the wrong order.",
    )
    html = client_for(manager).get(explain_url(proposal)).content.decode()
    assert "sampled for review" in html
    assert "<strong>rejected</strong> it — unsafe: “Refunded the wrong order.”" in html
    assert "critical disagreement" in html


def test_shadow_proposal_says_nothing_executed(client_for, manager, workflow):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    html = client_for(manager).get(explain_url(proposal)).content.decode()
    assert "waiting for a reviewer" in html
    assert "in shadow mode the agent only proposes" in html


def test_untrusted_text_is_escaped(client_for, manager, workflow):
    proposal = ProposalFactory(
        run__work_item__workflow=workflow,
        run__work_item__payload={"text": "<script>alert(1)</script> refund me"},
        rationale="<img src=x onerror=alert(2)>",
    )
    html = client_for(manager).get(explain_url(proposal)).content.decode()
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html


def test_other_workflows_actions_are_not_found(client_for, reviewer, other_workflow):
    proposal = ProposalFactory(run__work_item__workflow=other_workflow)
    assert client_for(reviewer).get(explain_url(proposal)).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/explain/proposal/999999/",
        "/explain/proposal/abc/",
        "/explain/execution/999999/",
        "/explain/execution/x/",
    ],
)
def test_unknown_or_malformed_ids_are_404(client_for, manager, path):
    assert client_for(manager).get(path).status_code == 404


def test_anonymous_is_sent_to_login(client, approved):
    proposal, _ = approved
    response = client.get(explain_url(proposal))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
