from __future__ import annotations

from collections import Counter

import pytest

from agents.models import Escalation, Proposal, Run, WorkItem
from agents.runner import run_work_item
from demo.models import CrmContact, SandboxOrder
from demo.workflows import ACCESS, CRM, REFUNDS, demo_grade, demo_seed
from governance.models import AuditEvent, ToolGrant, Workflow

pytestmark = pytest.mark.django_db


def test_demo_seed_is_idempotent():
    workflows = demo_seed(items_per_workflow=10)
    assert [w.slug for w in workflows] == [REFUNDS, ACCESS, CRM]
    counts = (
        WorkItem.objects.count(),
        Workflow.objects.count(),
        ToolGrant.objects.count(),
        SandboxOrder.objects.count(),
        CrmContact.objects.count(),
        AuditEvent.objects.count(),
    )
    assert counts[0] == 30
    demo_seed(items_per_workflow=10)
    assert (
        WorkItem.objects.count(),
        Workflow.objects.count(),
        ToolGrant.objects.count(),
        SandboxOrder.objects.count(),
        CrmContact.objects.count(),
        AuditEvent.objects.count(),
    ) == counts


def test_demo_model_is_mostly_right_and_sometimes_wrong():
    demo_seed(items_per_workflow=30)
    outcomes: Counter[str] = Counter()
    per_workflow: dict[str, Counter[str]] = {}
    for item in WorkItem.objects.select_related("workflow").order_by("pk"):
        run = run_work_item(work_item_id=item.pk)
        assert run is not None
        assert run.status in (Run.Status.PROPOSED, Run.Status.ESCALATED)
        grade = demo_grade(item)
        key = f"{grade['outcome']}-{'right' if grade['correct'] else 'wrong'}"
        outcomes[key] += 1
        per_workflow.setdefault(item.workflow.slug, Counter())[key] += 1
    print(dict(outcomes), {k: dict(v) for k, v in per_workflow.items()})
    total = sum(outcomes.values())
    proposed = outcomes["proposed-right"] + outcomes["proposed-wrong"]
    assert proposed / total > 0.5, outcomes
    assert outcomes["escalated-right"] + outcomes["escalated-wrong"] >= 10
    assert outcomes["proposed-wrong"] >= 3
    assert outcomes["proposed-right"] > 3 * outcomes["proposed-wrong"]
    # Every workflow got some proposals and some escalations.
    for slug in (REFUNDS, ACCESS, CRM):
        c = per_workflow[slug]
        assert c["proposed-right"] > 0
        assert (c["escalated-right"] + c["escalated-wrong"]) > 0
    assert Proposal.objects.filter(flagged_injection=True).exists()
    assert Escalation.objects.filter(reason=Escalation.Reason.HARD_CASE).exists()
    assert Escalation.objects.filter(reason=Escalation.Reason.POLICY_DENIED).exists()
