"""Races with real connections: each thread talks to PostgreSQL on its own connection."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import close_old_connections, connection

from governance.permissions import Role, workflow_grant_role
from reviews import claims, services
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
        except BaseException as exc:  # noqa: BLE001 - reported in the main thread
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
            claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
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
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
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


def test_two_reviewers_deciding_two_actions_of_one_plan_do_not_deadlock(
    roles, workflow, monkeypatch
):
    """The soak's finding: each reviewer locked their own action, then the plan
    dispatch locked the whole plan and waited for the other's. Now the whole plan is
    locked up front, in order, so the second reviewer waits instead."""
    from tests.factories import RunFactory

    run = RunFactory(work_item__workflow=workflow)
    first = ProposalFactory(run=run, work_item=run.work_item, workflow=workflow, sequence=1)
    second = ProposalFactory(run=run, work_item=run.work_item, workflow=workflow, sequence=2)
    reviewers = []
    for index in range(2):
        user = UserFactory(username=f"planner{index}")
        workflow_grant_role(user=user, workflow=workflow, role=Role.REVIEWER)
        reviewers.append(user)
    held = [
        claims.claim_proposal(reviewer=reviewers[0], proposal=first),
        claims.claim_proposal(reviewer=reviewers[1], proposal=second),
    ]
    second_dispatching = threading.Event()
    real_dispatch = services.plan_dispatch

    def dispatch(*, run_id: int):
        if threading.current_thread().name == "reviewer-0":
            # Hold this decision's locks until the other reviewer reaches the plan.
            second_dispatching.wait(timeout=1.5)
        else:
            second_dispatching.set()
        return real_dispatch(run_id=run_id)

    monkeypatch.setattr(services, "plan_dispatch", dispatch)
    errors: list[BaseException] = []

    def decide(index: int) -> None:
        try:
            services.proposal_decide(
                proposal_id=(first, second)[index].pk,
                reviewer=reviewers[index],
                claim_token=held[index].token,
                verdict="accept",
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(i,), name=f"reviewer-{i}") for i in range(2)]
    threads[0].start()
    threading.Event().wait(0.3)  # the first reviewer holds its locks
    threads[1].start()
    for thread in threads:
        thread.join(timeout=30)
    close_old_connections()
    assert errors == []
    assert Decision.objects.filter(proposal__run=run).count() == 2
