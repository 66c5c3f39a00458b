"""Claims: a reviewer's lease on one proposal, the only writer of ``Claim`` rows.

The lifecycle (a claim has no status column; the row is the lock):

| from | to | how |
|---|---|---|
| free | held | ``claim_next`` or ``claim_proposal``: one upsert (takes over an expired one) |
| held | held (renewed) | ``claim_renew``: the lease extended while the card is open |
| held | free | ``claim_take`` (inside the decision's transaction) or ``claim_release`` (skip) |
| any | free | ``claims_release_decided``: the rest of a plan rejected in one go |
| held, expired | held by another | the upsert's ``WHERE expires_at <= now`` |

Two reviewers never hold the same proposal. On PostgreSQL the next claim reads the
queue with ``FOR UPDATE SKIP LOCKED``, so concurrent reviewers step past each
other's rows instead of queueing behind them. On every database the claim row
itself is the lock: ``Claim.proposal`` is unique, and taking a claim is one
``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`` statement, a compare-and-set
that succeeds for exactly one reviewer.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from agents.models import Proposal
from governance import sqlkit
from governance.models import Workflow
from governance.permissions import REVIEW, workflows_for
from reviews import sql as reviews_sql
from reviews.models import Claim
from reviews.selectors import QueueFilters, claimable_q

# How many queue heads to try before giving up when every one is being taken at once.
CLAIM_ATTEMPTS = 5


def _lease() -> timedelta:
    return timedelta(seconds=settings.TENURE_CLAIM_LEASE_SECONDS)


def _scope(*, reviewer: AbstractBaseUser, workflow: Workflow | None) -> list[int]:
    if workflow is not None:
        return [workflow.pk]
    return list(workflows_for(reviewer, REVIEW).order_by("pk").values_list("pk", flat=True))


def _claim_upsert(*, proposal_id: int, reviewer_id: int, now: datetime) -> Claim | None:
    """Insert a claim, or take over an expired one, in one statement. None if
    another reviewer holds a live claim on the proposal."""
    return reviews_sql.claim_upsert(
        proposal_id=proposal_id, reviewer_id=reviewer_id, now=now, expires=now + _lease()
    )


def _claim_next_params(
    *,
    reviewer_id: int,
    workflow_ids: list[int],
    filters: QueueFilters,
    now: datetime,
    skip: list[int],
    held: bool,
) -> tuple[str, list[Any]]:
    filters_sql, filter_params = filters.as_sql("p")
    now_db = connection.ops.adapt_datetimefield_value(now)
    params: list[Any] = []
    if held:
        params += [reviewer_id, now_db, *workflow_ids, *filter_params]
    for workflow_id in workflow_ids:
        for _scope in ("pending", "sample"):
            params += [workflow_id, *filter_params, now_db, reviewer_id, *skip]
    statement = reviews_sql.claim_next_sql(
        workflows=len(workflow_ids), filters=filters_sql, skip=len(skip), held=held
    )
    return statement, params


def _held_or_heads(
    *,
    reviewer_id: int,
    workflow_ids: list[int],
    filters: QueueFilters,
    now: datetime,
    skip: list[int],
    held: bool,
) -> tuple[Claim | None, list[tuple[int, int, datetime]]]:
    """The reviewer's held claim (if ``held`` and they hold one), else the queue
    heads, highest priority first, then the oldest."""
    statement, params = _claim_next_params(
        reviewer_id=reviewer_id,
        workflow_ids=workflow_ids,
        filters=filters,
        now=now,
        skip=skip,
        held=held,
    )
    rows = sqlkit.fetch(statement, params)
    width = sqlkit.width(Claim)
    heads = []
    for row in rows:
        if row[0] is not None:
            return sqlkit.build(Claim, row), []
        heads.append((row[width], row[width + 1], reviews_sql.as_datetime(row[width + 2])))
    # Across workflows: higher priority first, then the oldest.
    heads.sort(key=lambda head: (-head[1], head[2]))
    return None, heads


def claim_next(
    *,
    reviewer: AbstractBaseUser,
    workflow: Workflow | None = None,
    filters: QueueFilters | None = None,
) -> Claim | None:
    """Claim the next proposal for ``reviewer`` in one workflow (or all theirs).

    A live claim the reviewer already holds in that scope comes back first (with
    its lease renewed); then the highest-priority, oldest unclaimed proposal.
    Expired claims are taken over. Returns None when the queue is empty.

    One statement reads the held claim or, when there is none, locks the queue
    heads (SKIP LOCKED); a second takes the claim. Serving the claim already held
    (every page view) writes nothing unless its lease is half gone.
    """
    filters = filters or QueueFilters()
    now = timezone.now()
    workflow_ids = _scope(reviewer=reviewer, workflow=workflow)
    if not workflow_ids:
        return None
    # No savepoint when the caller's transaction is open (decide-and-next): nothing
    # here is caught and retried, so an error rolls the whole request back anyway.
    with transaction.atomic(savepoint=False):
        held, heads = _held_or_heads(
            reviewer_id=reviewer.pk,
            workflow_ids=workflow_ids,
            filters=filters,
            now=now,
            skip=[],
            held=True,
        )
        if held is not None:
            return claim_renew(claim=held, now=now)
        return _claim_queue_head(
            reviewer=reviewer, workflow_ids=workflow_ids, filters=filters, now=now, heads=heads
        )


def _claim_queue_head(
    *,
    reviewer: AbstractBaseUser,
    workflow_ids: list[int],
    filters: QueueFilters,
    now: datetime,
    heads: list[tuple[int, int, datetime]],
) -> Claim | None:
    tried: list[int] = []
    for attempt in range(CLAIM_ATTEMPTS):
        if attempt:
            _held, heads = _held_or_heads(
                reviewer_id=reviewer.pk,
                workflow_ids=workflow_ids,
                filters=filters,
                now=now,
                skip=tried,
                held=False,
            )
        if not heads:
            return None
        for proposal_id, _priority, _created in heads:
            tried.append(proposal_id)
            claim = _claim_upsert(proposal_id=proposal_id, reviewer_id=reviewer.pk, now=now)
            if claim is not None:
                return claim
    return None


@transaction.atomic
def claim_proposal(
    *, reviewer: AbstractBaseUser, proposal: Proposal, keep_others: bool = False
) -> Claim | None:
    """Claim one chosen proposal (opened from the list). Returns the reviewer's
    claim, or None when it is decided or another reviewer holds it. ``keep_others``
    (a decision from chat) leaves the card the reviewer holds in the console alone."""
    now = timezone.now()
    if not Proposal.objects.filter(claimable_q(), pk=proposal.pk).exists():
        return None
    held = Claim.objects.filter(proposal=proposal, reviewer=reviewer, expires_at__gt=now).first()
    if held is not None:
        return claim_renew(claim=held, now=now)
    claim = _claim_upsert(proposal_id=proposal.pk, reviewer_id=reviewer.pk, now=now)
    if claim is not None and not keep_others:
        # One card at a time: opening another item gives back the others.
        Claim.objects.filter(reviewer=reviewer).exclude(pk=claim.pk).delete()
    return claim


def claim_renew(*, claim: Claim, now: datetime | None = None) -> Claim:
    """Extend a live lease (the reviewer is looking at the card). Keeps claimed_at,
    which is when the time spent on the decision starts."""
    now = now or timezone.now()
    if claim.expires_at - now > _lease() / 2:
        return claim  # plenty of lease left: no write (and no commit) on every page view
    claim.expires_at = now + _lease()
    Claim.objects.filter(pk=claim.pk, token=claim.token).update(expires_at=claim.expires_at)
    return claim


@transaction.atomic
def claim_release(*, reviewer: AbstractBaseUser, claim_token: uuid.UUID | str) -> int:
    """Give a proposal back to the queue (skip). Returns how many claims were released."""
    deleted, _ = Claim.objects.filter(reviewer=reviewer, token=claim_token).delete()
    return deleted


def claim_take(*, proposal_id: int, reviewer_id: int, claim_token: uuid.UUID | str) -> Claim | None:
    """Check and release the reviewer's claim in one statement: delete it if it is
    theirs with this token, and return it (None: the claim was lost). Called inside
    the decision's transaction, so a refused decision puts it back (rollback)."""
    try:
        token = uuid.UUID(str(claim_token))
    except ValueError:
        return None
    return reviews_sql.claim_take(proposal_id=proposal_id, reviewer_id=reviewer_id, token=token)


def claim_is_elsewhere(*, reviewer_id: int, claim_token: uuid.UUID | str, proposal_id: int) -> bool:
    """Whether the token is the reviewer's claim on another proposal than this one (the
    card they decided on is not the card they hold). Read only when a decision's
    claim was not found."""
    try:
        token = uuid.UUID(str(claim_token))
    except ValueError:
        return False
    return (
        Claim.objects.filter(reviewer_id=reviewer_id, token=token)
        .exclude(proposal_id=proposal_id)
        .exists()
    )


def claims_held_by_others(*, proposal_ids: list[int], reviewer_id: int) -> list[tuple[int, int]]:
    """(proposal id, reviewer id) of the live claims other reviewers hold on these."""
    return list(
        Claim.objects.filter(proposal_id__in=proposal_ids, expires_at__gt=timezone.now())
        .exclude(reviewer_id=reviewer_id)
        .values_list("proposal_id", "reviewer_id")
    )


def claims_release_decided(*, proposal_ids: list[int]) -> int:
    """Release every claim on proposals that were just decided together (inside the
    decisions' transaction): nobody holds a decided card."""
    if not proposal_ids:
        return 0
    deleted, _ = Claim.objects.filter(proposal_id__in=proposal_ids).delete()
    return deleted
