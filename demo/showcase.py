"""Something on every screen on first start: executed actions (after approval and
on their own), a post-hoc sample waiting for review, an action that needs two
approvers, and a circuit-breaker demotion.

All of it goes through the real services: the gate decides each promotion (a
second manager approves limited), simulated reviewers decide through the review
services, the executions run through ``execute_action``, and the breaker trips on
a critical rejection of a sample. A step the evidence does not allow is skipped
and said so. Idempotent: it runs once per database (the marker is the tool's first
change).
"""

from __future__ import annotations

import random

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from agents.models import Proposal
from agents.runner import run_work_item
from agents.services import proposal_execute
from demo.history import demo_item_review
from demo.workflows import REFUNDS, demo_feed_one
from governance.breaker import breaker_check
from governance.models import AutonomyChange, AutonomyLevel, ToolGrant, Workflow
from governance.services import autonomy_change_approve, autonomy_change_request
from reviews.claims import claim_proposal
from reviews.models import Decision, RejectReason
from reviews.services import proposal_decide

TOOL = "create_refund"


def _promote(workflow: Workflow, to_level: str, users: dict, reason: str) -> str:
    grant = ToolGrant.objects.get(workflow=workflow, tool=TOOL)
    try:
        change = autonomy_change_request(
            workflow=Workflow.objects.get(pk=workflow.pk),
            grant=grant,
            to_level=to_level,
            actor=users["mona"],
            reason=reason,
        )
        if change.status == AutonomyChange.Status.REQUESTED:
            autonomy_change_approve(change=change, actor=users["max"])
    except ValidationError as exc:
        return f"{TOOL} stays below {to_level}: {exc.messages[0]}"
    return f"{TOOL} → {to_level}"


def _feed(workflow: Workflow) -> list:
    """New demo work, run by the agent here and now (no worker is needed yet), with
    whatever may execute executed (the worker would do the same, idempotently)."""
    items = [item for item in demo_feed_one() if item.workflow_id == workflow.pk]
    for item in items:
        run_work_item(work_item_id=item.pk)
        _execute_ready(item)
    return items


def _execute_ready(item) -> None:
    ready = Proposal.objects.filter(work_item=item).filter(
        Q(auto_executed=True) | Q(status__in=[Proposal.Status.ACCEPTED, Proposal.Status.EDITED])
    )
    for proposal in ready:
        proposal_execute(proposal_id=proposal.pk)


def _feed_and_decide(workflow: Workflow, reviewer, rng: random.Random, n: int) -> None:
    """Feed and decide items until the refund tool has its dwell at supervised (the
    decisions the gate asks for before limited), at most ``n`` rounds."""
    supervised = Decision.objects.filter(
        proposal__workflow=workflow,
        proposal__tool=TOOL,
        autonomy_level=AutonomyLevel.SUPERVISED,
    )
    for _ in range(n):
        for item in _feed(workflow):
            with transaction.atomic():
                demo_item_review(item, reviewer, rng)
            _execute_ready(item)
        if supervised.count() >= workflow.gate_min_supervised_decisions:
            return


def _samples(workflow: Workflow):
    return Proposal.objects.filter(
        workflow=workflow,
        tool=TOOL,
        sampled_for_review=True,
        auto_executed=True,
        decision__isnull=True,
    )


def _reject_a_sample(workflow: Workflow, reviewer) -> str:
    """A reviewer finds an automatic refund they would never have approved: the
    critical rejection trips the breaker, which demotes the tool to supervised."""
    samples = list(_samples(workflow).order_by("pk"))
    if len(samples) < 2:
        return "no automatic refund was sampled: the breaker has nothing to judge yet"
    sample = samples[0]  # the others stay in the queue as post-hoc samples to review
    claim = claim_proposal(reviewer=reviewer, proposal=sample)
    if claim is None:
        return "the sample is held by someone else"
    proposal_decide(
        proposal_id=sample.pk,
        reviewer=reviewer,
        claim_token=claim.token,
        verdict=Decision.Verdict.REJECT,
        reason=RejectReason.POLICY,
        reason_text="(demo) Refunded a final-sale item: the policy excludes it.",
        seconds_spent=40,
    )
    # Deciding runs the breaker already; check once more in case it is off that path.
    grant = ToolGrant.objects.get(workflow=workflow, tool=TOOL)
    if grant.autonomy_level != AutonomyLevel.LIMITED:
        return f"circuit breaker: {TOOL} demoted to {grant.autonomy_level}"
    trip = breaker_check(workflow=workflow, tool=TOOL, critical="critical rejection of a sample")
    return f"circuit breaker: {TOOL} {trip.action}" if trip else "the breaker did not trip"


def demo_showcase_seed(*, seed: int = 11) -> list[str]:
    workflow = Workflow.objects.filter(slug=REFUNDS).first()
    if workflow is None:
        return []
    grant = ToolGrant.objects.filter(workflow=workflow, tool=TOOL).first()
    if grant is None or grant.autonomy_changes.exists():
        return []
    users = get_user_model().objects.in_bulk(["mona", "max", "rita"], field_name="username")
    rng = random.Random(seed)  # noqa: S311 - simulated reviewers, not security
    lines = [_promote(workflow, AutonomyLevel.SUPERVISED, users, "Shadow evidence cleared.")]
    # At supervised each approved refund executes after its approval.
    _feed_and_decide(workflow, users["rita"], rng, n=40)
    lines.append(
        _promote(workflow, AutonomyLevel.LIMITED, users, "Supervised refunds agree; cap $200.")
    )
    grant.refresh_from_db()
    if grant.effective_level == AutonomyLevel.LIMITED:
        # In-cap refunds now execute on their own; a share of them is sampled (two are
        # wanted: one for the breaker, one left for a reviewer).
        for _ in range(30):
            _feed(workflow)
            if _samples(workflow).count() >= 2:
                break
        lines.append(_reject_a_sample(workflow, users["rita"]))
    # Fresh work left waiting: one of them above the two-approver threshold.
    for _ in range(3):
        _feed(workflow)
    return lines
