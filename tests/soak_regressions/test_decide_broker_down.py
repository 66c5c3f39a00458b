"""Found by the soak (bench/soak.py): a reviewer approves while Redis is down.

``decide`` commits the decision (and ``plan_dispatch_ready`` marks the item
``executing``); sending ``execute_action`` on commit then raises. The
reviewer gets a 500 for a decision that was recorded, and no task exists for the
approved plan: the item stays ``executing`` until something redispatches it
(today only a pause and resume of the workflow does).
"""

from __future__ import annotations

import re

import pytest
from celery import current_app
from django.urls import reverse
from kombu.exceptions import OperationalError

from governance.models import AutonomyLevel, ToolGrant
from reviews.models import Decision
from tests.conftest import login
from tests.factories import ToolGrantFactory
from tests.reviews.factories import fake_tool_for, plan_factory

TOKEN_RE = re.compile(r'name="token" value="([0-9a-f-]{36})"')


def _broker_down(*args, **kwargs):
    raise OperationalError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")


@pytest.mark.django_db(transaction=True)
def test_an_approval_recorded_while_the_broker_is_down_is_not_a_500(
    workflow, reviewer, monkeypatch
):
    monkeypatch.setattr("reviews.tools.tool_for", fake_tool_for)
    workflow.autonomy_level = AutonomyLevel.SUPERVISED
    workflow.save()
    ToolGrantFactory(workflow=workflow, tool="create_refund")
    ToolGrant.objects.filter(workflow=workflow).update(autonomy_level=AutonomyLevel.SUPERVISED)
    (proposal,) = plan_factory(workflow=workflow, steps=1, autonomy_level=AutonomyLevel.SUPERVISED)
    client = login(reviewer)
    client.raise_request_exception = False
    html = client.get(reverse("review-queue", args=[workflow.slug])).content.decode()
    token = TOKEN_RE.search(html).group(1)
    monkeypatch.setattr(current_app, "send_task", _broker_down)
    response = client.post(
        reverse("review-decide", args=[workflow.slug, proposal.pk]),
        {"verdict": "accept", "token": token},
        HTTP_HX_REQUEST="true",
    )
    recorded = Decision.objects.filter(proposal=proposal).exists()
    assert recorded
    assert response.status_code == 200, response.status_code
