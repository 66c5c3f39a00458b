"""Shadow mode, reported by the system of record: what the human really did.

In shadow mode the agent proposes and a human does the work in their own
system. When that system reports the action (tool + arguments, for a work item),
Tenure pairs it with the work item's pending proposal for the same tool and
records a ``reported`` Decision:

- same tool, same arguments (after the tool's model normalises both): accept;
- same tool, different arguments: edit, with the field diff;
- a tool the agent did not propose, or no action at all: reject, reason
  ``wrong_action``. The reported arguments are kept as ``final_arguments`` and
  ``diff`` records ``{"tool": [proposed, reported]}``, so the human's real
  action stays available as the expected answer for evals.

"No action" rejects every pending proposal of the item; an action pairs with one.
Only shadow proposals can be reported: above shadow, accepting would execute
an action the human already took.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pydantic
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agents import states
from agents.models import Proposal, WorkItem
from agents.tools.base import arguments_hash
from governance.audit import audit_append
from governance.models import AutonomyLevel, Workflow
from reviews import tools as review_tools
from reviews.models import Claim, Decision, RejectReason

ERR_UNKNOWN_WORK_ITEM = "There is no work item “{external_id}” in this workflow."
ERR_NO_PROPOSAL = (
    "The agent has not proposed anything for work item “{external_id}” yet; "
    "report the action again once it has."
)
ERR_ALREADY_DECIDED = (
    "Every proposal of work item “{external_id}” was already decided; nothing was recorded."
)
ERR_NOT_SHADOW = (
    "The proposal for {tool} was made at the {level} level, not in shadow mode: "
    "a reviewer decides it in Tenure. Nothing was recorded."
)
ERR_NO_ACTION_WITH_ARGUMENTS = "Arguments were given without a tool. Send the tool, or neither."
REASON_NO_ACTION = "The system of record reports that the human took no action."
REASON_OTHER_TOOL = "The system of record reports {reported} instead of {proposed}."

# As for reviewers: a report of hours spent is not time spent deciding.
MAX_REPORTED_SECONDS = 15 * 60

_STATUS_FOR_VERDICT = {
    Decision.Verdict.ACCEPT: Proposal.Status.ACCEPTED,
    Decision.Verdict.EDIT: Proposal.Status.EDITED,
    Decision.Verdict.REJECT: Proposal.Status.REJECTED,
}


class ReportRefused(ValidationError):
    """The report cannot be paired (nothing pending, not shadow): a conflict, not bad input."""


class ReportedArgumentsInvalid(ValidationError):
    """The reported arguments do not validate against the tool; ``field_errors`` says why."""

    def __init__(self, field_errors: dict[str, list[str]]) -> None:
        super().__init__(dict(field_errors), code="invalid_arguments")
        self.field_errors = field_errors


@dataclass(frozen=True)
class Pairing:
    proposal: Proposal
    verdict: str
    final_arguments: dict[str, Any]
    diff: dict[str, list[Any]]
    reason: str = ""
    reason_text: str = ""


def _diff(
    tool: Any | None,
    raw_proposed: dict[str, Any],
    proposed: dict[str, Any],
    final: dict[str, Any],
) -> dict[str, list[Any]]:
    """Fields whose values differ as the tool reads them (42 and "42.00" are one
    Decimal), shown as JSON. Without the tool's model, the JSON is compared."""
    if tool is None:
        return review_tools.arguments_diff(proposed, final)
    try:
        before = tool.args_model.model_validate(raw_proposed).model_dump()
        after = tool.args_model.model_validate(final).model_dump()
    except pydantic.ValidationError:
        return review_tools.arguments_diff(proposed, final)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return {key: [proposed.get(key), final.get(key)] for key in changed}


def _pair(
    *, workflow: Workflow, pending: list[Proposal], tool: str | None, arguments: dict[str, Any]
) -> list[Pairing]:
    if tool is None:
        return [
            Pairing(
                proposal=proposal,
                verdict=Decision.Verdict.REJECT,
                final_arguments={},
                diff={"tool": [proposal.tool, None]},
                reason=RejectReason.WRONG_ACTION,
                reason_text=REASON_NO_ACTION,
            )
            for proposal in pending
        ]
    match = next((p for p in pending if p.tool == tool), None)
    if match is None:
        proposal = pending[0]
        return [
            Pairing(
                proposal=proposal,
                verdict=Decision.Verdict.REJECT,
                final_arguments=dict(arguments),
                diff={"tool": [proposal.tool, tool]},
                reason=RejectReason.WRONG_ACTION,
                reason_text=REASON_OTHER_TOOL.format(reported=tool, proposed=proposal.tool),
            )
        ]
    model = review_tools.tool_for(workflow=workflow, name=tool)
    proposed = review_tools.normalised(model, match.arguments)
    final, field_errors = review_tools.validate_arguments(model, dict(arguments))
    if field_errors or final is None:
        raise ReportedArgumentsInvalid(field_errors)
    diff = _diff(model, match.arguments, proposed, final)
    verdict = Decision.Verdict.EDIT if diff else Decision.Verdict.ACCEPT
    return [Pairing(proposal=match, verdict=verdict, final_arguments=final, diff=diff)]


def _plan_dispatch_ready(run_id: int) -> None:
    try:
        from agents.services import plan_dispatch_ready
    except ImportError:  # the agent runtime's plan dispatcher is not installed yet
        return
    plan_dispatch_ready(run_id=run_id)


@transaction.atomic
def proposal_report_actual(
    *,
    workflow: Workflow,
    external_id: str,
    tool: str | None,
    arguments: dict[str, Any] | None = None,
    principal: str,
    note: str = "",
    seconds_spent: int = 0,
) -> list[Decision]:
    """Record what the human did for a work item as ``reported`` decisions.

    Locks the item's proposals, refuses when none is pending (already decided,
    or the agent has not proposed yet) or when they are not shadow proposals,
    writes one Decision per paired proposal, releases reviewers' claims on them,
    and audits under ``principal`` (``integration:<name>``).
    """
    arguments = dict(arguments or {})
    if tool is None and arguments:
        raise ValidationError({"arguments": [ERR_NO_ACTION_WITH_ARGUMENTS]}, code="arguments")
    work_item = WorkItem.objects.filter(workflow=workflow, external_id=external_id).first()
    if work_item is None:
        raise WorkItem.DoesNotExist(ERR_UNKNOWN_WORK_ITEM.format(external_id=external_id))
    proposals = list(
        Proposal.objects.select_for_update().filter(work_item=work_item).order_by("sequence", "pk")
    )
    if not proposals:
        raise ReportRefused(ERR_NO_PROPOSAL.format(external_id=external_id), code="no_proposal")
    pending = [p for p in proposals if p.status == Proposal.Status.PENDING]
    if not pending:
        raise ReportRefused(
            ERR_ALREADY_DECIDED.format(external_id=external_id), code="already_decided"
        )
    for proposal in pending:
        if proposal.autonomy_level != AutonomyLevel.SHADOW:
            raise ReportRefused(
                ERR_NOT_SHADOW.format(tool=proposal.tool, level=proposal.autonomy_level),
                code="not_shadow",
            )

    pairings = _pair(workflow=workflow, pending=pending, tool=tool, arguments=arguments)
    now = timezone.now()
    seconds = max(0, min(int(seconds_spent), MAX_REPORTED_SECONDS))
    decisions = []
    for pairing in pairings:
        proposal = pairing.proposal
        decision = Decision.objects.create(
            proposal=proposal,
            reviewer=None,
            kind=Decision.Kind.REPORTED,
            verdict=pairing.verdict,
            final_arguments=pairing.final_arguments,
            final_arguments_hash=arguments_hash(pairing.final_arguments),
            diff=pairing.diff,
            reason=pairing.reason,
            reason_text=(pairing.reason_text + ("\n" + note.strip() if note.strip() else "")),
            autonomy_level=proposal.autonomy_level,
            seconds_spent=seconds,
        )
        proposal.status = _STATUS_FOR_VERDICT[pairing.verdict]
        proposal.decided_at = now
        states.proposal_move(proposal.pk, to=proposal.status, decided_at=now)
        audit_append(
            action="proposal.reported",
            actor=principal,
            workflow=workflow,
            obj=proposal,
            data={
                "tool": proposal.tool,
                "reported_tool": tool,
                "run": proposal.run_id,
                "sequence": proposal.sequence,
                "verdict": pairing.verdict,
                "reason": pairing.reason,
                "diff": pairing.diff,
                "final_arguments_hash": decision.final_arguments_hash,
                "work_item": work_item.external_id,
            },
        )
        decisions.append(decision)
    # A reviewer holding one of these cards loses it: the decision is already made.
    Claim.objects.filter(proposal__in=[p.proposal for p in pairings]).delete()
    for run_id in sorted({p.proposal.run_id for p in pairings}):
        _plan_dispatch_ready(run_id)
    return decisions
