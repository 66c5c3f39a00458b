"""GET /workflows/{slug}/metrics reads evidence.metrics."""

from __future__ import annotations

import pytest

from agents.models import Proposal
from governance.models import ApiToken
from reviews.models import Decision
from tests.factories import ProposalFactory, WorkItemFactory, args_hash

pytestmark = pytest.mark.django_db

URL = "/api/v1/workflows/refunds/metrics"


def test_metrics_count_decisions_and_the_queue(api, workflow):
    for verdict in (Decision.Verdict.ACCEPT, Decision.Verdict.ACCEPT, Decision.Verdict.EDIT):
        proposal = ProposalFactory(
            run__work_item=WorkItemFactory(workflow=workflow), status=Proposal.Status.ACCEPTED
        )
        Decision.objects.create(
            proposal=proposal,
            verdict=verdict,
            final_arguments=proposal.arguments,
            final_arguments_hash=args_hash(proposal.arguments),
            autonomy_level="shadow",
        )
    ProposalFactory(run__work_item=WorkItemFactory(workflow=workflow))
    response = api.get(URL, {"days": 7})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["agreement"]["accepted"] == 2
    assert body["agreement"]["n"] == 3
    assert 0 < body["agreement"]["wilson_low"] < body["agreement"]["wilson_high"] <= 1
    assert body["pending_proposals"] == 1
    assert body["workflow"] == "refunds"


def test_metrics_need_their_scope_and_a_sane_window(workflow, api_for, api):
    reader = api_for([workflow], verbs=[ApiToken.Verb.PROPOSALS_READ])
    assert reader.get(URL).status_code == 403
    assert api.get(URL, {"days": 0}).status_code == 422
