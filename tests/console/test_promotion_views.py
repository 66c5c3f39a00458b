from __future__ import annotations

import pytest
from django.urls import reverse

from agents.evals import SuiteStatus
from evidence import gate as evidence_gate
from governance.models import AutonomyChange, AutonomyLevel
from tests.console.evidence import make_evidence
from tests.factories import ToolGrantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def suite_green(monkeypatch):
    monkeypatch.setattr(evidence_gate, "regression_status", lambda wf: SuiteStatus(True, "green"))


def url(workflow, **query):
    base = reverse("workflow-promote", args=[workflow.slug])
    return base + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def test_page_shows_each_criterion_with_numbers(manager, workflow, client_for, suite_green):
    make_evidence(workflow, accepted=10)
    body = client_for(manager).get(url(workflow)).content.decode()
    assert "Shadow → Supervised: the gate" in body
    assert "Reviewed decisions in the window" in body
    assert "≥ 50" in body
    assert "disabled" in body  # 10 decisions do not clear the gate


def test_request_freezes_evidence_and_waits_for_four_eyes(
    manager, workflow, client_for, suite_green
):
    workflow.autonomy_level = AutonomyLevel.LIMITED
    workflow.save()
    grant = ToolGrantFactory(workflow=workflow, autonomy_level=AutonomyLevel.SUPERVISED)
    make_evidence(workflow, accepted=60, level=AutonomyLevel.SUPERVISED)
    response = client_for(manager).post(
        url(workflow, tool=grant.tool), {"reason": "90 days clean"}, follow=True
    )
    assert "A second manager must approve it" in response.content.decode()
    change = AutonomyChange.objects.get()
    assert change.grant == grant
    assert change.to_level == AutonomyLevel.LIMITED
    assert change.evidence["gate"]["passed"] is True


def test_request_refused_when_the_gate_fails(manager, workflow, client_for, suite_green):
    response = client_for(manager).post(url(workflow), {"reason": "please"}, follow=True)
    assert "does not clear the promotion gate" in response.content.decode()
    assert not AutonomyChange.objects.exists()


def test_backtest_runs_from_the_page(manager, workflow, client_for):
    grant = ToolGrantFactory(workflow=workflow)
    make_evidence(workflow, accepted=2, amounts=["40.00"])
    make_evidence(workflow, rejected=1, amounts=["80.00"])
    body = client_for(manager).get(url(workflow, tool=grant.tool, amount="100", days="30"))
    assert body.status_code == 200
    result = body.context["backtest"]
    assert (result.would_auto, result.auto_rejected) == (3, 1)


def test_backtest_bad_cap_is_a_form_error(manager, workflow, client_for):
    grant = ToolGrantFactory(workflow=workflow)
    response = client_for(manager).get(url(workflow, tool=grant.tool, amount="-3", days="30"))
    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 0.01" in response.content.decode()


def test_unknown_tool_is_a_404(manager, workflow, client_for):
    response = client_for(manager).get(url(workflow, tool="nope"))
    assert response.status_code == 404


def test_reviewers_cannot_open_the_promotion_page(reviewer, workflow, client_for):
    assert client_for(reviewer).get(url(workflow)).status_code == 403
