"""A card shows the facts its tool declares, read from this run's tool outputs."""

from __future__ import annotations

import dataclasses

import pytest
from django.urls import reverse

from agents.models import Step
from tests.conftest import login
from tests.reviews.factories import REFUND_TOOL, plan_factory

pytestmark = pytest.mark.django_db

TOOL_WITH_FACTS = dataclasses.replace(
    REFUND_TOOL,
    review_facts=(
        ("Order total", "lookup_order.total"),
        ("Refundable", "lookup_order.refundable"),  # not in the output: left out
        ("Channel", "item.channel"),
    ),
)


@pytest.fixture(autouse=True)
def tool_with_facts(monkeypatch):
    monkeypatch.setattr(
        "reviews.tools.tool_for",
        lambda **kw: TOOL_WITH_FACTS if kw["name"] == TOOL_WITH_FACTS.name else None,
    )


def test_the_card_shows_declared_facts_beside_the_arguments(workflow, reviewer):
    proposal = plan_factory(workflow=workflow)[0]
    item = proposal.work_item
    item.payload = {**item.payload, "channel": "email"}
    item.save(update_fields=["payload"])
    html = login(reviewer).get(reverse("review-card", args=[workflow.slug, proposal.pk]))
    html = html.content.decode()
    facts = html.split('class="grid compact review-facts"', 1)[1].split("</table>", 1)[0]
    assert '<th scope="row">Order total</th>' in facts
    assert "$99.00" in facts  # an amount, written as money
    assert "lookup_order (step 2)" in facts
    assert "Refundable" not in facts
    assert '<th scope="row">Channel</th><td>email</td>' in facts


def test_the_read_that_matches_the_proposal_is_the_one_shown(workflow, reviewer):
    proposal = plan_factory(workflow=workflow)[0]
    order = proposal.arguments.get("order_number", "A-1001")
    Step.objects.create(
        run=proposal.run,
        index=10,
        kind=Step.Kind.TOOL_CALL,
        name="lookup_order",
        input={"order_number": order},
        output={"total": "12.00"},
    )
    Step.objects.create(
        run=proposal.run,
        index=11,
        kind=Step.Kind.TOOL_CALL,
        name="lookup_order",
        input={"order_number": "Z-9"},
        output={"total": "777.00"},
    )
    html = login(reviewer).get(reverse("review-card", args=[workflow.slug, proposal.pk]))
    facts = html.content.decode().split("review-facts", 1)[1].split("</table>", 1)[0]
    assert "$12.00" in facts
    assert "777" not in facts
