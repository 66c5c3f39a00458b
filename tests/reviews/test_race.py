"""Races with real connections: each thread talks to PostgreSQL on its own connection."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import close_old_connections, connection

from console.permissions import Role, workflow_grant_role
from reviews import services
from reviews.models import Claim, Decision
from tests.factories import ProposalFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8
ITEMS = 60


def _run_threads(target, count: int) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def wrapper(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            target(index)
        except BaseException as exc:  # report it in the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrapper, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    close_old_connections()
    return errors


def test_concurrent_reviewers_claim_every_item_exactly_once(roles, workflow):
    assert connection.vendor == "postgresql"
    reviewers = []
    for index in range(THREADS):
        user = UserFactory(username=f"racer{index}")
        workflow_grant_role(user=user, workflow=workflow, role=Role.REVIEWER)
        reviewers.append(user)
    items = [ProposalFactory(run__work_item__workflow=workflow).pk for _ in range(ITEMS)]
    claimed: list[tuple[int, int]] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        reviewer = reviewers[index]
        while True:
            claim = services.claim_next(reviewer=reviewer, workflow=workflow)
            if claim is None:
                return
            with lock:
                claimed.append((claim.proposal_id, index))
            services.proposal_decide(
                proposal_id=claim.proposal_id,
                reviewer=reviewer,
                claim_token=claim.token,
                verdict="accept",
            )

    errors = _run_threads(work, THREADS)
    assert errors == []
    counts = Counter(proposal_id for proposal_id, _ in claimed)
    assert sorted(counts) == sorted(items)
    assert set(counts.values()) == {1}
    assert Decision.objects.count() == ITEMS
    assert not Claim.objects.exists()
    # More than one reviewer really took part.
    assert len({index for _, index in claimed}) > 1


def test_a_double_submitted_decision_is_applied_once(roles, workflow, reviewer):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    claim = services.claim_next(reviewer=reviewer, workflow=workflow)
    outcomes: list[str] = []

    def decide(_index: int) -> None:
        try:
            services.proposal_decide(
                proposal_id=proposal.pk,
                reviewer=reviewer,
                claim_token=claim.token,
                verdict="accept",
            )
        except services.DecisionRefused as exc:
            outcomes.append(exc.messages[0])
        else:
            outcomes.append("ok")

    assert _run_threads(decide, 4) == []
    assert outcomes.count("ok") == 1
    assert outcomes.count(services.ERR_ALREADY_DECIDED.format(status="accepted")) == 3
    assert Decision.objects.count() == 1
