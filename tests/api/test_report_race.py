"""A report and a reviewer deciding the same proposal at once: one decision wins."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from reviews.models import Claim, Decision
from reviews.services import DecisionRefused, proposal_decide
from tests.api.conftest import ApiClient
from tests.factories import ProposalFactory, WorkItemFactory


@pytest.mark.django_db(transaction=True)
def test_a_report_racing_a_reviewer_records_one_decision(workflow, reviewer, make_token):
    item = WorkItemFactory(workflow=workflow, external_id="T-1")
    proposal = ProposalFactory(run__work_item=item)
    now = timezone.now()
    claim = Claim.objects.create(
        proposal=proposal, reviewer=reviewer, claimed_at=now, expires_at=now + timedelta(hours=1)
    )
    _, plain = make_token([workflow])
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def report() -> None:
        try:
            client = ApiClient(plain)
            barrier.wait(timeout=30)
            outcomes["report"] = client.post(
                "/api/v1/workflows/refunds/actions/report",
                {"external_id": "T-1", "tool": "create_refund", "arguments": proposal.arguments},
            ).status_code
        finally:
            connection.close()

    def decide() -> None:
        try:
            barrier.wait(timeout=30)
            proposal_decide(
                proposal_id=proposal.pk,
                reviewer=reviewer,
                claim_token=claim.token,
                verdict="accept",
            )
            outcomes["review"] = "decided"
        except DecisionRefused:
            outcomes["review"] = "refused"
        finally:
            connection.close()

    threads = [threading.Thread(target=report), threading.Thread(target=decide)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert Decision.objects.filter(proposal=proposal).count() == 1
    kind = Decision.objects.get(proposal=proposal).kind
    if kind == Decision.Kind.REPORTED:
        assert outcomes == {"report": 200, "review": "refused"}
    else:
        assert outcomes == {"report": 409, "review": "decided"}
