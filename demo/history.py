"""The demo's past: weeks of shadow-mode decisions, so dashboards and the
promotion gate have real evidence to show on first start.

Past items are run by the real agent (the demo model), then decided by
simulated reviewers through the same review services people use: a proposal
that matches what a careful human would do is accepted, one with the right
tool but wrong details is edited to the right arguments, anything else is
rejected with a reason. Timestamps are then spread over the last weeks.
"""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from agents.models import Escalation, Proposal, Run, Step, WorkItem
from demo.workflows import demo_expected, demo_grade, demo_history_items
from governance import privacy
from reviews.claims import claim_proposal
from reviews.models import (
    Decision,
    EscalationResolution,
    HumanAction,
    ItemOutcome,
    RejectReason,
)
from reviews.services import escalation_resolve, proposal_decide
from reviews.sql import decisions_backdatable

REVIEWER_FOR = {"refunds": "rita", "access-requests": "rita", "crm-dedupe": "ravi"}
# Refunds has the longest history: enough evidence for its gate to be worth reading.
HISTORY_SHARE = {"refunds": 1.0, "access-requests": 0.4, "crm-dedupe": 0.4}


def _edit_target(proposal: Proposal, expected: list[dict[str, Any]] | None) -> dict | None:
    """The right arguments for a proposal that picked the right tool but got details wrong."""
    for action in expected or []:
        if action.get("tool") != proposal.tool:
            continue
        shown = privacy.reveal(dict(proposal.arguments))  # the reviewer edits values
        fixed = dict(shown)
        for key, value in action.items():
            if key != "tool":
                fixed[key] = str(value) if isinstance(value, Decimal) else value
        return fixed if fixed != shown else None
    return None


def _reject_reason(proposal: Proposal, expected: list[dict[str, Any]] | None) -> str:
    if expected is None:
        return RejectReason.MISSING_CONTEXT
    if proposal.flagged_injection:
        return RejectReason.UNSAFE
    if any(a.get("tool") == proposal.tool for a in expected):
        return RejectReason.WRONG_RECORD
    return RejectReason.WRONG_ACTION


def demo_item_review(item: WorkItem, reviewer, rng: random.Random) -> int:
    """A simulated reviewer decides the item's pending proposals as the demo's ground
    truth says (accept, edit to the expected arguments, or reject)."""
    grade = demo_grade(item)
    expected = demo_expected(item)
    decided = 0
    for proposal in item.proposals.filter(status=Proposal.Status.PENDING).order_by("sequence"):
        claim = claim_proposal(reviewer=reviewer, proposal=proposal)
        if claim is None:
            continue
        seconds = rng.randint(12, 75)
        if grade["verdicts"].get(proposal.pk) == "accept":
            verdict, args, reason = Decision.Verdict.ACCEPT, None, ""
        elif (fixed := _edit_target(proposal, expected)) is not None:
            verdict, args, reason = Decision.Verdict.EDIT, fixed, ""
        else:
            verdict, args, reason = (
                Decision.Verdict.REJECT,
                None,
                _reject_reason(proposal, expected),
            )
        try:
            proposal_decide(
                proposal_id=proposal.pk,
                reviewer=reviewer,
                claim_token=claim.token,
                verdict=verdict,
                final_arguments=args,
                reason=reason,
                reason_text="(demo history)" if reason else "",
                seconds_spent=seconds,
            )
        except Exception:  # noqa: BLE001 - an invalid simulated edit becomes a rejection
            proposal_decide(
                proposal_id=proposal.pk,
                reviewer=reviewer,
                claim_token=claim_proposal(reviewer=reviewer, proposal=proposal).token,
                verdict=Decision.Verdict.REJECT,
                reason=RejectReason.WRONG_RECORD,
                reason_text="(demo history)",
                seconds_spent=seconds,
            )
        decided += 1
    return decided


def _resolve_escalations(item: WorkItem, reviewer, rng: random.Random) -> int:
    """Past escalations were handled too: a human took the action or closed it,
    and rated how useful the agent's packet was."""
    resolved = 0
    for escalation in item.escalations.filter(status=Escalation.Status.OPEN):
        useful = escalation.reason in {"policy_denied", "hard_case", "invalid_arguments"}
        escalation_resolve(
            escalation_id=escalation.pk,
            reviewer=reviewer,
            outcome=EscalationResolution.Outcome.TOOK_ACTION
            if demo_expected(item)
            else EscalationResolution.Outcome.CLOSED,
            note="(demo history)",
            packet_rating=rng.randint(4, 5) if useful else rng.randint(2, 4),
            minutes_saved=rng.randint(3, 12) if useful else rng.randint(0, 4),
            seconds_spent=rng.randint(40, 240),
        )
        resolved += 1
    return resolved


def _backdate(item: WorkItem, when) -> None:
    """Move one item's whole story to ``when`` (the simulation ran just now)."""
    later = when + timedelta(minutes=3)
    WorkItem.objects.filter(pk=item.pk).update(
        created_at=when, updated_at=later, resolved_at=later if item.resolved_at else None
    )
    runs = Run.objects.filter(work_item=item)
    runs.update(created_at=when, started_at=when, finished_at=when + timedelta(seconds=4))
    Step.objects.filter(run__work_item=item).update(created_at=when)
    Proposal.objects.filter(work_item=item).update(
        created_at=when, decided_at=later, sla_due_at=when + timedelta(hours=4)
    )
    with decisions_backdatable():
        Decision.objects.filter(proposal__work_item=item).update(created_at=later)
    ItemOutcome.objects.filter(work_item=item).update(occurred_at=later)
    HumanAction.objects.filter(outcome__work_item=item).update(occurred_at=later)
    Escalation.objects.filter(work_item=item).update(created_at=when + timedelta(seconds=4))
    EscalationResolution.objects.filter(escalation__work_item=item).update(created_at=later)


def demo_history_seed(*, per_workflow: int = 100, days: int = 28, seed: int = 7) -> int:
    """Run and decide past items (``per_workflow`` for refunds, fewer for the
    others). Idempotent: items already decided are left as they are."""
    rng = random.Random(seed)  # noqa: S311 - simulated reviewers, not security
    users = {u.username: u for u in get_user_model().objects.filter(username__in={"rita", "ravi"})}
    now = timezone.now()
    decided = 0
    counts = {slug: int(per_workflow * share) for slug, share in HISTORY_SHARE.items()}
    items = demo_history_items(counts=counts)
    position: dict[str, int] = {}
    for item in items:
        slug = item.workflow.slug
        n = position[slug] = position.get(slug, -1) + 1
        if item.proposals.exclude(status=Proposal.Status.PENDING).exists() or (
            item.escalations.exclude(status=Escalation.Status.OPEN).exists()
        ):
            continue
        reviewer = users[REVIEWER_FOR[slug]]
        with transaction.atomic():
            decided += demo_item_review(item, reviewer, rng)
            _resolve_escalations(item, reviewer, rng)
            item.refresh_from_db()
            # Spread evenly over the window, oldest first, with working-hours jitter.
            age = timedelta(days=days) * (1 - n / counts[slug])
            _backdate(item, now - age + timedelta(minutes=rng.randint(0, 240)))
    return decided


def demo_evals_seed() -> list[str]:
    """Build the demo regression suites and run them once, so the gate's
    regression criterion reads a real result. Idempotent."""
    from agents.evals import eval_suite_run
    from agents.models import EvalRun
    from demo.evals import eval_suites_seed_demo

    if EvalRun.objects.exists():
        return []
    return [str(eval_suite_run(suite=suite).status) for suite in eval_suites_seed_demo()]


def demo_promotions_seed() -> list[str]:
    """Refunds' history clears the gate: raise its ceiling to limited through the
    real services (evidence frozen, four eyes), leaving each tool in shadow for a
    manager to promote in the demo. Idempotent."""
    from django.core.exceptions import ValidationError

    from governance.models import AutonomyChange, AutonomyLevel, Workflow
    from governance.services import autonomy_change_approve, autonomy_change_request

    workflow = Workflow.objects.filter(slug="refunds").first()
    if workflow is None or workflow.autonomy_changes.exists():
        return []
    users = get_user_model().objects.in_bulk(["mona", "max"], field_name="username")
    done = []
    try:
        autonomy_change_request(
            workflow=workflow,
            to_level=AutonomyLevel.SUPERVISED,
            actor=users["mona"],
            reason="Four weeks in shadow mode cleared the gate.",
        )
        change = autonomy_change_request(
            workflow=Workflow.objects.get(pk=workflow.pk),
            to_level=AutonomyLevel.LIMITED,
            actor=users["mona"],
            reason="Raise the ceiling so single tools can earn limited autonomy.",
        )
        if change.status == AutonomyChange.Status.REQUESTED:
            autonomy_change_approve(change=change, actor=users["max"])
        done.append("refunds: shadow → supervised → limited (ceiling)")
    except ValidationError as exc:
        done.append(f"refunds stays in shadow: {exc.messages[0]}")
    return done
