"""A promotion the policy makes moot says so before it is requested: on the promotion
page, and on the change it makes (the same words), which the workflow page shows."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agents.always_approve import WHY_HIGH_IMPACT, WHY_TWO_APPROVERS
from agents.evals import SuiteStatus
from evidence import gate as evidence_gate
from governance.models import AutonomyChange, AutonomyLevel
from governance.moot import WARN_MOOT_TOOL, WARN_MOOT_WORKFLOW, promotion_moot
from governance.services import autonomy_change_request
from tests.console.evidence import make_evidence
from tests.factories import ToolGrantFactory

pytestmark = pytest.mark.django_db

REPLY_MOOT = WARN_MOOT_TOOL.format(
    tool="draft_customer_reply",
    level="limited",
    why=WHY_HIGH_IMPACT.format(label="External message"),
)


@pytest.fixture
def suite_green(monkeypatch):
    monkeypatch.setattr(evidence_gate, "regression_status", lambda wf: SuiteStatus(True, "green"))


@pytest.fixture
def limited(workflow):
    workflow.autonomy_level = AutonomyLevel.LIMITED
    workflow.save()
    return workflow


def url(workflow, tool: str = "") -> str:
    base = reverse("workflow-promote", args=[workflow.slug])
    return f"{base}?tool={tool}" if tool else base


def test_the_page_says_a_high_impact_tool_promotion_is_moot_before_it_is_requested(
    manager, limited, client_for
):
    ToolGrantFactory(
        workflow=limited, tool="draft_customer_reply", autonomy_level=AutonomyLevel.SUPERVISED
    )
    response = client_for(manager).get(url(limited, "draft_customer_reply"))

    assert response.status_code == 200
    assert response.context["moot"] == REPLY_MOOT
    body = response.content.decode()
    assert 'id="promotion-moot"' in body
    assert "still behaves as it does now" in body
    assert body.index('id="promotion-moot"') < body.index("Request promotion to Limited")
    assert not AutonomyChange.objects.exists()


def test_a_money_tool_promotion_is_not_moot(manager, limited, client_for):
    ToolGrantFactory(workflow=limited, tool="create_refund", autonomy_level="supervised")
    response = client_for(manager).get(url(limited, "create_refund"))
    assert response.context["moot"] == ""
    assert 'id="promotion-moot"' not in response.content.decode()


def test_a_promotion_to_supervised_is_never_moot(manager, workflow, client_for):
    ToolGrantFactory(workflow=workflow, tool="draft_customer_reply")
    response = client_for(manager).get(url(workflow, "draft_customer_reply"))
    assert response.context["target"] == AutonomyLevel.SUPERVISED
    assert response.context["moot"] == ""


def test_the_request_carries_the_same_warning_and_the_workflow_page_shows_it(
    manager, limited, client_for, suite_green
):
    grant = ToolGrantFactory(
        workflow=limited, tool="draft_customer_reply", autonomy_level=AutonomyLevel.SUPERVISED
    )
    make_evidence(limited, accepted=60, tool="draft_customer_reply", level=AutonomyLevel.SUPERVISED)
    client = client_for(manager)

    response = client.post(
        url(limited, "draft_customer_reply"), {"reason": "clean month"}, follow=True
    )

    change = AutonomyChange.objects.get()
    assert change.grant == grant
    assert change.status == AutonomyChange.Status.REQUESTED
    assert change.evidence["moot"] == REPLY_MOOT
    assert REPLY_MOOT in response.content.decode()  # the message, and the history entry


def test_the_service_returns_the_warning_on_the_change(manager, limited, suite_green):
    grant = ToolGrantFactory(
        workflow=limited, tool="draft_customer_reply", autonomy_level=AutonomyLevel.SUPERVISED
    )
    make_evidence(limited, accepted=60, tool="draft_customer_reply", level=AutonomyLevel.SUPERVISED)
    change = autonomy_change_request(
        workflow=limited, grant=grant, to_level=AutonomyLevel.LIMITED, actor=manager
    )
    assert change.evidence["moot"] == REPLY_MOOT


def test_a_two_approver_class_makes_the_promotion_moot(limited):
    limited.policy = {"two_approvers": {"classes": ["write"]}}
    limited.save()
    grant = ToolGrantFactory(workflow=limited, tool="merge_contacts", autonomy_level="supervised")
    assert promotion_moot(workflow=limited, to_level=AutonomyLevel.LIMITED, grant=grant) == (
        WARN_MOOT_TOOL.format(
            tool="merge_contacts", level="limited", why=WHY_TWO_APPROVERS.format(label="Write")
        )
    )
    limited.policy = {}
    limited.save()
    assert promotion_moot(workflow=limited, to_level=AutonomyLevel.LIMITED, grant=grant) == ""


def test_a_workflow_promotion_names_the_tools_it_changes_nothing_for(workflow):
    workflow.autonomy_level = AutonomyLevel.SUPERVISED
    workflow.save()
    for tool in ("create_refund", "draft_customer_reply", "get_order"):
        ToolGrantFactory(workflow=workflow, tool=tool, autonomy_level="supervised")

    warning = promotion_moot(workflow=workflow, to_level=AutonomyLevel.LIMITED)

    assert warning == WARN_MOOT_WORKFLOW.format(
        tools="draft_customer_reply",
        level="limited",
        whys="draft_customer_reply: " + WHY_HIGH_IMPACT.format(label="External message"),
    )
    assert "get_order" not in warning
    assert "create_refund" not in warning
