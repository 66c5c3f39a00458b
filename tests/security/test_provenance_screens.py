"""The review card, the explain page and the evidence pack say which value came
from where."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agents.models import Proposal
from tests.factories import ProposalFactory, RunFactory, ToolGrantFactory
from tests.reviews.factories import plan_factory

pytestmark = pytest.mark.django_db

PROVENANCE = {
    "$.order_number": {
        "role": "subject",
        "value": "B-2002",
        "source": "tool_output:get_order#step3",
        "bound": False,
        "owner": "someone@else.example",
        "binding": "$.order_number = B-2002 belongs to someone else than the work item's subject.",
    },
    "$.amount": {"role": "money", "value": "199.00", "source": "untrusted_text:payload.text"},
}


def test_the_card_shows_where_each_value_came_from(client_for, reviewer, workflow):
    ToolGrantFactory(workflow=workflow, tool="create_refund")
    (proposal,) = plan_factory(workflow=workflow, steps=2, provenance=PROVENANCE)
    url = reverse("review-card", args=[workflow.slug, proposal.pk])
    html = client_for(reviewer).get(url).content.decode()
    assert "Where the values came from" in html
    assert "system-of-record lookup get_order#step3 in this run" in html
    assert "only untrusted text (payload.text)" in html
    assert "not the item&#x27;s subject" in html or "not the item's subject" in html


def test_the_explain_page_and_the_pack_show_provenance(client_for, manager, workflow):
    run = RunFactory(work_item__workflow=workflow)
    proposal = ProposalFactory(
        run=run,
        verdict=Proposal.Verdict.ALLOW,
        status=Proposal.Status.EXECUTED,
        auto_executed=True,
        provenance={
            "$.amount": {"role": "money", "value": "42.00", "source": "trusted_field:amount"}
        },
    )
    client = client_for(manager)
    html = client.get(reverse("explain-proposal", args=[proposal.pk])).content.decode()
    assert "trusted field “amount” of the work item" in html
    pack = client.get(reverse("evidence-pack", args=[workflow.slug]) + "?format=json").json()
    [auto] = pack["auto_executed"]
    assert auto["proposal"] == proposal.pk
    assert auto["provenance"]["$.amount"]["source"] == "trusted_field:amount"
    page = client.get(reverse("evidence-pack", args=[workflow.slug])).content.decode()
    assert "trusted field “amount” of the work item" in page
