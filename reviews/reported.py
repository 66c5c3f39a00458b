"""Shadow mode, reported by the system of record: what the human really did.

In shadow mode the agent proposes and a human does the work in their own system.
That system reports the human's actions for a work item (a set of tool calls, or
none), and Tenure judges the agent's plan against them with one rule,
``pair_actions``, which imported history (``reviews.history``) goes through too:

- Each reported action pairs with a still-pending proposal of the item of the
  *same tool*. Among all such couples the closest are paired first: the fewest
  argument fields that differ (compared as the tool's schema reads them, so 42 and
  "42.00" are one Decimal), then the proposal earlier in the plan, then the action
  earlier in the report. Equal arguments: accept; otherwise edit, with the field diff.
- A reported action that pairs with nothing (the agent proposed no pending action of
  that tool) is a *missed* action: a ``HumanAction``, never a rejection of some other
  proposal.
- When the report carries the human's whole set (``complete``), each pending
  proposal left unpaired is rejected, reason ``wrong_action``: the human did not do
  it. A partial report leaves them pending for a later report.
- No action at all (an empty set) rejects every pending proposal, and on an item the
  agent proposed nothing for (an escalation) it closes the item as "both did
  nothing". A complete report writes the item's ``ItemOutcome``, once.

An action identical to one already recorded on the item (a decided proposal's final
arguments, or a missed action) is that action again, not a second one: a retried
report never counts twice. With an ``Idempotency-Key`` a retry gets the original
answer back (``ActionReport``). Only shadow proposals can be reported: above
shadow, accepting would execute an action the human already took.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents import states
from agents.models import Escalation, Proposal, WorkItem
from agents.tools.base import arguments_hash
from governance.audit import audit_append
from governance.models import AutonomyLevel, Workflow
from reviews import tools as review_tools
from reviews.models import ActionReport, Claim, Decision, HumanAction, ItemOutcome, RejectReason

ERR_UNKNOWN_WORK_ITEM = "There is no work item “{external_id}” in this workflow."
ERR_NO_PROPOSAL = (
    "The agent has not proposed anything for work item “{external_id}” yet; "
    "report the action again once it has."
)
ERR_NOTHING_PROPOSED_PARTIAL = (
    "The agent proposed nothing for work item “{external_id}”, so there is nothing to pair "
    "a part of the human's actions with: report the whole set (complete: true) to close it."
)
ERR_ALREADY_DECIDED = (
    "Every proposal of work item “{external_id}” was already decided; nothing was recorded."
)
ERR_ALREADY_REPORTED = (
    "Every action in this report was already recorded on work item “{external_id}”; "
    "nothing was recorded."
)
ERR_ITEM_CLOSED = (
    "Work item “{external_id}” is closed: the human's account of it is already complete "
    "({source}). Nothing was recorded."
)
ERR_NOT_SHADOW = (
    "The proposal for {tool} was made at the {level} level, not in shadow mode: "
    "a reviewer decides it in Tenure. Nothing was recorded."
)
ERR_IDEMPOTENCY_CONFLICT = (
    "The Idempotency-Key “{key}” was already used for a different report. A retry must "
    "send the same body; a new report needs a new key."
)
ERR_NO_ACTION_WITH_ARGUMENTS = "Arguments were given without a tool. Send the tool, or neither."
REASON_NO_ACTION = "The system of record reports that the human took no action."
REASON_NOT_DONE = "The system of record reports that the human did not take this action."

# As for reviewers: a report of hours spent is not time spent deciding.
MAX_REPORTED_SECONDS = 15 * 60

STATUS_FOR_VERDICT = {
    Decision.Verdict.ACCEPT: Proposal.Status.ACCEPTED,
    Decision.Verdict.EDIT: Proposal.Status.EDITED,
    Decision.Verdict.REJECT: Proposal.Status.REJECTED,
}
# The proposal statuses that say the human did the proposed action (as proposed or edited).
DONE_STATUSES = (Proposal.Status.ACCEPTED, Proposal.Status.EDITED, Proposal.Status.EXECUTED)


class ReportRefused(ValidationError):
    """The report contradicts what Tenure holds (nothing pending, closed, not shadow,
    a reused key): a conflict, not bad input."""


class ReportedArgumentsInvalid(ValidationError):
    """Reported arguments do not validate against their tool. ``by_action`` maps the
    action's position in the report to its field errors."""

    def __init__(self, by_action: dict[int, dict[str, list[str]]]) -> None:
        flat = {
            f"actions[{index}].{name}": messages
            for index, errors in by_action.items()
            for name, messages in errors.items()
        }
        super().__init__(flat, code="invalid_arguments")
        self.by_action = by_action

    @property
    def field_errors(self) -> dict[str, list[str]]:
        """The errors of a one-action report, keyed by field as before sets existed."""
        if len(self.by_action) == 1:
            return next(iter(self.by_action.values()))
        return self.message_dict


# --- The pairing rule -----------------------------------------------------------------


@dataclass(frozen=True)
class ReportedAction:
    """One action the human took: a tool and its arguments."""

    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pairing:
    """A judgement of one pending proposal: paired with ``action`` (its position in the
    set), or rejected (``action`` None) because the human did not do it."""

    proposal: Proposal
    verdict: str
    final_arguments: dict[str, Any]
    diff: dict[str, list[Any]]
    action: int | None = None
    reason: str = ""
    reason_text: str = ""


@dataclass(frozen=True)
class PairingPlan:
    pairings: list[Pairing]  # in plan order
    missed: list[int]  # positions of the actions nothing was proposed for
    unpaired: list[Proposal]  # pending proposals left pending (a partial set)


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


def pair_actions(
    *,
    pending: Sequence[Proposal],
    actions: Sequence[ReportedAction],
    tools: Mapping[str, Any | None],
    complete: bool,
) -> PairingPlan:
    """Judge the pending proposals of one item (in plan order) against the human's
    actions (arguments already validated): the rule in this module's docstring.

    ``tools`` maps a tool name to its registered tool (None when the registry does not
    know it: its arguments are then compared as JSON). Pure: nothing is read or written.
    """
    candidates = []
    for a_index, action in enumerate(actions):
        tool = tools.get(action.tool)
        for p_index, proposal in enumerate(pending):
            if proposal.tool != action.tool:
                continue
            proposed = review_tools.normalised(tool, proposal.arguments)
            diff = _diff(tool, proposal.arguments, proposed, action.arguments)
            candidates.append((len(diff), p_index, a_index, diff))
    candidates.sort(key=lambda c: c[:3])
    paired_to: dict[int, tuple[int, dict[str, list[Any]]]] = {}
    taken_actions: set[int] = set()
    for _, p_index, a_index, diff in candidates:
        if p_index in paired_to or a_index in taken_actions:
            continue
        paired_to[p_index] = (a_index, diff)
        taken_actions.add(a_index)

    pairings, unpaired = [], []
    for p_index, proposal in enumerate(pending):
        if p_index in paired_to:
            a_index, diff = paired_to[p_index]
            pairings.append(
                Pairing(
                    proposal=proposal,
                    verdict=Decision.Verdict.EDIT if diff else Decision.Verdict.ACCEPT,
                    final_arguments=dict(actions[a_index].arguments),
                    diff=diff,
                    action=a_index,
                )
            )
        elif complete:
            pairings.append(
                Pairing(
                    proposal=proposal,
                    verdict=Decision.Verdict.REJECT,
                    final_arguments={},
                    diff={"tool": [proposal.tool, None]},
                    reason=RejectReason.WRONG_ACTION,
                    reason_text=REASON_NOT_DONE if actions else REASON_NO_ACTION,
                )
            )
        else:
            unpaired.append(proposal)
    missed = [a_index for a_index in range(len(actions)) if a_index not in taken_actions]
    return PairingPlan(pairings=pairings, missed=missed, unpaired=unpaired)


def actions_validate(
    actions: Sequence[ReportedAction], tools: Mapping[str, Any | None]
) -> list[ReportedAction]:
    """The actions with their arguments as their tool dumps them (a tool the registry
    does not know keeps its arguments as sent). Raises ReportedArgumentsInvalid."""
    out, errors = [], {}
    for index, action in enumerate(actions):
        final, field_errors = review_tools.validate_arguments(
            tools.get(action.tool), dict(action.arguments)
        )
        if field_errors or final is None:
            errors[index] = field_errors
            continue
        out.append(ReportedAction(tool=action.tool, arguments=final))
    if errors:
        raise ReportedArgumentsInvalid(errors)
    return out


def typed_arguments(tool: Any | None, arguments: Mapping[str, Any]) -> Any:
    """Arguments as the tool reads them, for telling whether two actions are the same."""
    if tool is not None:
        try:
            return tool.args_model.model_validate(dict(arguments)).model_dump()
        except pydantic.ValidationError:
            pass
    return json.loads(json.dumps(dict(arguments), cls=DjangoJSONEncoder, sort_keys=True))


# --- Reports --------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionReportRequest:
    """What the system of record says the human did about one work item."""

    external_id: str
    actions: tuple[ReportedAction, ...]
    complete: bool
    note: str = ""
    seconds_spent: int = 0

    def fingerprint(self) -> str:
        """sha256 of the normalised request: the one-action and the set shapes of the
        same report, with keys in any order, have one fingerprint."""
        body = {
            "external_id": self.external_id,
            "actions": [{"tool": a.tool, "arguments": a.arguments} for a in self.actions],
            "complete": self.complete,
            "note": self.note,
            "seconds_spent": self.seconds_spent,
        }
        canonical = json.dumps(body, cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ReportAnswer:
    response: dict[str, Any]
    replayed: bool = False


def _plan_dispatch_ready(run_id: int) -> None:
    try:
        from agents.services import plan_dispatch_ready
    except ImportError:  # the agent runtime's plan dispatcher is not installed yet
        return
    plan_dispatch_ready(run_id=run_id)


def _key_claim(
    *, workflow: Workflow, key: str, request_hash: str, principal: str
) -> ActionReport | None:
    """Take the key for this report, or return the report that holds it. A concurrent
    report with the same key waits here (on the unique index) until the first commits,
    then gets its answer; if the first rolled back, it takes the key itself."""
    try:
        with transaction.atomic():
            ActionReport.objects.create(
                workflow=workflow,
                idempotency_key=key,
                request_hash=request_hash,
                response={},
                principal=principal[:150],
            )
    except IntegrityError:
        return ActionReport.objects.get(workflow=workflow, idempotency_key=key)
    return None


def actions_report(
    *,
    workflow: Workflow,
    request: ActionReportRequest,
    principal: str,
    idempotency_key: str = "",
) -> ReportAnswer:
    """Record what the human did for a work item and answer with what was recorded.

    With ``idempotency_key``, the answer is stored under the key in the same
    transaction: the same key and body again returns it (``replayed``) and writes
    nothing; the same key with another body is refused (``idempotency_conflict``).
    """
    key = (idempotency_key or "").strip()
    request_hash = request.fingerprint()
    with transaction.atomic():
        if key:
            stored = _key_claim(
                workflow=workflow, key=key, request_hash=request_hash, principal=principal
            )
            if stored is not None:
                if stored.request_hash != request_hash:
                    raise ReportRefused(
                        ERR_IDEMPOTENCY_CONFLICT.format(key=key), code="idempotency_conflict"
                    )
                return ReportAnswer(response=stored.response, replayed=True)
        response = _report_record(workflow=workflow, request=request, principal=principal)
        # As stored: the first answer and its replays are the same JSON, to the character.
        response = json.loads(json.dumps(response, cls=DjangoJSONEncoder))
        if key:
            ActionReport.objects.filter(workflow=workflow, idempotency_key=key).update(
                response=response
            )
    return ReportAnswer(response=response)


def _locked_item(workflow: Workflow, external_id: str) -> tuple[WorkItem, list[Proposal]]:
    """The item and its proposals, locked: proposals first (in plan order, as a
    reviewer's decision locks them), then the item, so two reports of one item, even
    one with no proposal, run one after the other."""
    item_id = (
        WorkItem.objects.filter(workflow=workflow, external_id=external_id)
        .values_list("pk", flat=True)
        .first()
    )
    if item_id is None:
        raise WorkItem.DoesNotExist(ERR_UNKNOWN_WORK_ITEM.format(external_id=external_id))
    proposals = list(
        Proposal.objects.select_for_update().filter(work_item_id=item_id).order_by("sequence", "pk")
    )
    item = WorkItem.objects.select_for_update().get(pk=item_id)
    return item, proposals


def _recorded_actions(
    item: WorkItem, proposals: list[Proposal], tools: Mapping[str, Any | None]
) -> list[tuple[str, Any]]:
    """What the human is already known to have done on the item: decided proposals'
    final arguments (accepted or edited) and missed actions, as (tool, typed args)."""
    done = [p for p in proposals if p.status in DONE_STATUSES]
    finals = dict(
        Decision.objects.filter(proposal__in=done).values_list("proposal_id", "final_arguments")
    )
    recorded = [
        (p.tool, typed_arguments(tools.get(p.tool), finals.get(p.pk) or p.arguments)) for p in done
    ]
    recorded += [
        (tool, typed_arguments(tools.get(tool), arguments))
        for tool, arguments in HumanAction.objects.filter(work_item=item).values_list(
            "tool", "arguments"
        )
    ]
    return recorded


def _report_record(
    *, workflow: Workflow, request: ActionReportRequest, principal: str
) -> dict[str, Any]:
    external_id = request.external_id
    item, proposals = _locked_item(workflow, external_id)
    outcome = ItemOutcome.objects.filter(work_item=item).first()
    if outcome is not None:
        raise ReportRefused(
            ERR_ITEM_CLOSED.format(external_id=external_id, source=outcome.get_source_display()),
            code="item_closed",
        )
    pending = [p for p in proposals if p.status == Proposal.Status.PENDING]
    if not proposals:
        if item.status in (WorkItem.Status.RECEIVED, WorkItem.Status.RUNNING):
            raise ReportRefused(ERR_NO_PROPOSAL.format(external_id=external_id), code="no_proposal")
        if not request.complete:
            raise ReportRefused(
                ERR_NOTHING_PROPOSED_PARTIAL.format(external_id=external_id), code="no_proposal"
            )
    elif not pending and not request.complete:
        raise ReportRefused(
            ERR_ALREADY_DECIDED.format(external_id=external_id), code="already_decided"
        )
    for proposal in pending:
        if proposal.autonomy_level != AutonomyLevel.SHADOW:
            raise ReportRefused(
                ERR_NOT_SHADOW.format(tool=proposal.tool, level=proposal.autonomy_level),
                code="not_shadow",
            )

    names = {a.tool for a in request.actions} | {p.tool for p in proposals}
    tools = {name: review_tools.tool_for(workflow=workflow, name=name) for name in sorted(names)}
    actions = actions_validate(request.actions, tools)

    # An action already recorded on the item is that action again (a retry, or a whole
    # set repeating what a partial report said): it is not counted a second time.
    recorded = _recorded_actions(item, proposals, tools)
    fresh: list[int] = []
    repeated: list[int] = []
    for index, action in enumerate(actions):
        typed = (action.tool, typed_arguments(tools.get(action.tool), action.arguments))
        if typed in recorded:
            recorded.remove(typed)
            repeated.append(index)
        else:
            fresh.append(index)
    if actions and not fresh and not request.complete:
        raise ReportRefused(
            ERR_ALREADY_REPORTED.format(external_id=external_id), code="already_reported"
        )

    plan = pair_actions(
        pending=pending,
        actions=[actions[i] for i in fresh],
        tools=tools,
        complete=request.complete,
    )
    now = timezone.now()
    decisions = _decisions_write(
        workflow=workflow, item=item, plan=plan, fresh=fresh, request=request,
        principal=principal, now=now,
    )  # fmt: skip
    missed = [
        HumanAction(
            work_item=item,
            workflow=workflow,
            tool=actions[fresh[i]].tool,
            arguments=actions[fresh[i]].arguments,
            occurred_at=now,
        )
        for i in plan.missed
    ]
    HumanAction.objects.bulk_create(missed)
    missed_positions = [fresh[i] for i in plan.missed]

    outcome = None
    if request.complete:
        did_nothing = not any(p.status in DONE_STATUSES for p in proposals) and not (
            HumanAction.objects.filter(work_item=item).exists()
        )
        outcome = ItemOutcome.objects.create(
            work_item=item,
            workflow=workflow,
            source=ItemOutcome.Source.REPORT,
            did_nothing=did_nothing,
            occurred_at=now,
        )
        HumanAction.objects.filter(work_item=item, outcome__isnull=True).update(outcome=outcome)
        _item_close(
            workflow=workflow, item=item, has_proposals=bool(proposals), principal=principal
        )

    # A reviewer holding one of these cards loses it: the decision is already made.
    Claim.objects.filter(proposal__in=[p.proposal for p in plan.pairings]).delete()
    for run_id in sorted({p.proposal.run_id for p in plan.pairings}):
        _plan_dispatch_ready(run_id)
    audit_append(
        action="work_item.reported",
        actor=principal,
        workflow=workflow,
        obj=item,
        data={
            "work_item": item.external_id,
            "complete": request.complete,
            "actions": len(actions),
            "paired": sum(1 for p in plan.pairings if p.action is not None),
            "rejected": sum(1 for p in plan.pairings if p.action is None),
            "missed": len(missed),
            "already_recorded": len(repeated),
            "missed_tools": sorted({m.tool for m in missed}),
            "did_nothing": outcome.did_nothing if outcome is not None else None,
        },
    )
    return {
        "external_id": item.external_id,
        "complete": request.complete,
        "decisions": [
            {
                "decision_id": decision.pk,
                "proposal_id": pairing.proposal.pk,
                "tool": pairing.proposal.tool,
                "sequence": pairing.proposal.sequence,
                "verdict": pairing.verdict,
                "reason": pairing.reason,
                "diff": pairing.diff,
                "action": fresh[pairing.action] if pairing.action is not None else None,
            }
            for pairing, decision in zip(plan.pairings, decisions, strict=True)
        ],
        "missed": [
            {"id": m.pk, "tool": m.tool, "arguments": m.arguments, "action": position}
            for m, position in zip(missed, missed_positions, strict=True)
        ],
        "already_recorded": repeated,
        "pending": [p.pk for p in plan.unpaired],
        "outcome": _outcome_out(outcome),
    }


def _outcome_out(outcome: ItemOutcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    return {
        "id": outcome.pk,
        "source": outcome.source,
        "did_nothing": outcome.did_nothing,
        "imported": outcome.imported,
        "occurred_at": outcome.occurred_at,
    }


def _seconds_shares(total: int, count: int) -> list[int]:
    """The report's time is the human's time on the item: shared by its decisions."""
    if count == 0:
        return []
    share, rest = divmod(total, count)
    return [share + (rest if i == 0 else 0) for i in range(count)]


def _decisions_write(
    *,
    workflow: Workflow,
    item: WorkItem,
    plan: PairingPlan,
    fresh: list[int],
    request: ActionReportRequest,
    principal: str,
    now: Any,
) -> list[Decision]:
    seconds = max(0, min(int(request.seconds_spent), MAX_REPORTED_SECONDS))
    note = request.note.strip()
    decisions = []
    for pairing, spent in zip(
        plan.pairings, _seconds_shares(seconds, len(plan.pairings)), strict=True
    ):
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
            reason_text="\n".join(t for t in (pairing.reason_text, note) if t),
            autonomy_level=proposal.autonomy_level,
            seconds_spent=spent,
        )
        proposal.status = STATUS_FOR_VERDICT[pairing.verdict]
        proposal.decided_at = now
        states.proposal_move(proposal.pk, to=proposal.status, decided_at=now)
        audit_append(
            action="proposal.reported",
            actor=principal,
            workflow=workflow,
            obj=proposal,
            data={
                "tool": proposal.tool,
                "action": fresh[pairing.action] if pairing.action is not None else None,
                "run": proposal.run_id,
                "sequence": proposal.sequence,
                "verdict": pairing.verdict,
                "reason": pairing.reason,
                "diff": pairing.diff,
                "final_arguments_hash": decision.final_arguments_hash,
                "work_item": item.external_id,
            },
        )
        decisions.append(decision)
    return decisions


def _item_close(*, workflow: Workflow, item: WorkItem, has_proposals: bool, principal: str) -> None:
    """The human's account is complete: nothing is left to escalate. An item the agent
    proposed nothing for is resolved here (the plan dispatcher resolves the others once
    their last proposal is decided): the human finished the work."""
    open_escalations = list(
        Escalation.objects.filter(work_item=item, status=Escalation.Status.OPEN).values_list(
            "pk", flat=True
        )
    )
    if open_escalations:
        Escalation.objects.filter(pk__in=open_escalations).update(status=Escalation.Status.RESOLVED)
        audit_append(
            action="escalation.closed_by_report",
            actor=principal,
            workflow=workflow,
            obj=item,
            data={"escalations": open_escalations, "work_item": item.external_id},
        )
    if not has_proposals:
        states.work_item_resolve(item.pk, succeeded=True)
