"""Cases: from a decided proposal, an escalation's resolution, or a rule over
recent decisions; one suite per workflow by default."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import IntegrityError, transaction

from agents.evals.replay import _has_placeholder, _tool, recording_from_run
from agents.evals.scoring import free_text_fields
from agents.models import (
    Escalation,
    EvalCase,
    EvalSuite,
    Proposal,
    Run,
    Step,
)
from agents.tools import BUILTIN_TOOLS, Tool, registry_for
from governance.audit import audit_append
from governance.models import Workflow

DEFAULT_SUITE = "regression"
DEFAULT_THRESHOLD = Decimal("0.900")

ERR_NOT_DECIDED = "Proposal {id} has no decision yet; only decided proposals become eval cases."
ERR_NOTHING_EXPECTED = "The run of proposal {id} has no accepted, edited or rejected action."
ERR_UNKNOWN_RULE = "“{rule}” is not a rule; use one of: {rules}."
ERR_WRONG_WORKFLOW = "The suite {suite} belongs to another workflow."
ERR_BAD_ACTION = "An expected action needs a tool name and an arguments object: {action!r}."


RULES = ("rejections", "edits", "accepts", "decisions", "escalations")
DEFAULT_RULE_LIMIT = 50


def eval_suite_ensure(
    *, workflow: Workflow, name: str = DEFAULT_SUITE, threshold: Decimal | None = None
) -> EvalSuite:
    suite, _ = EvalSuite.objects.get_or_create(
        workflow=workflow,
        name=name,
        defaults={"threshold": threshold if threshold is not None else DEFAULT_THRESHOLD},
    )
    return suite


def _decision_of(proposal: Proposal) -> Any:
    try:
        return proposal.decision  # reviews.Decision, through its reverse relation
    except ObjectDoesNotExist:
        return None


def _action(tool: Tool | None, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"tool": name, "arguments": arguments, "ignore": free_text_fields(tool)}


def _normalise_actions(workflow: Workflow, actions: Iterable[Any]) -> list[dict[str, Any]]:
    registry = registry_for(workflow)
    out = []
    for action in actions:
        if (
            not isinstance(action, dict)
            or not isinstance(action.get("tool"), str)
            or not isinstance(action.get("arguments", {}), dict)
        ):
            raise ValidationError(ERR_BAD_ACTION.format(action=action), code="action")
        tool = _tool(workflow, action["tool"], registry)
        out.append(
            {
                "tool": action["tool"],
                "arguments": action.get("arguments") or {},
                "ignore": list(action.get("ignore", free_text_fields(tool))),
            }
        )
    return out


def eval_case_create(*, suite: EvalSuite, actor: Any, **fields: Any) -> EvalCase:
    with transaction.atomic():
        case = EvalCase.objects.create(
            suite=suite,
            created_by=_actor_label(actor),
            **fields,
        )
        audit_append(
            action="eval.case.created",
            actor=actor,
            workflow=suite.workflow,
            obj=case,
            data={
                "suite": suite.name,
                "source": case.source,
                "external_id": case.external_id,
                "expected_outcome": case.expected_outcome,
            },
        )
    return case


def _actor_label(actor: Any) -> str:
    if actor is None:
        return ""
    if isinstance(actor, str):
        return actor[:150]
    return getattr(actor, "get_username", lambda: str(actor))()[:150]


def eval_case_from_decision(
    *,
    decision: Any,
    suite: EvalSuite | None = None,
    actor: Any,
    expected_actions: list[dict[str, Any]] | None = None,
) -> tuple[EvalCase, bool]:
    """A case from a decided proposal's run: the human's final arguments for every
    accepted or edited proposal are the expected actions, every rejected one is
    forbidden. Idempotent per run and suite: returns (case, created)."""
    proposal = decision.proposal
    run = proposal.run
    workflow = proposal.workflow
    suite = suite or eval_suite_ensure(workflow=workflow)
    if suite.workflow_id != workflow.pk:
        raise ValidationError(ERR_WRONG_WORKFLOW.format(suite=suite), code="suite")
    existing = EvalCase.objects.filter(suite=suite, source_proposal__run_id=run.pk).first()
    if existing is not None:
        return existing, False
    registry = registry_for(workflow)
    actions: list[dict[str, Any]] = []
    forbidden: list[dict[str, Any]] = []
    tags: set[str] = set()
    for p in run.proposals.order_by("sequence"):
        d = decision if p.pk == proposal.pk else _decision_of(p)
        if d is None:
            continue
        if p.flagged_injection:
            tags.add("adversarial")
        if d.verdict == "reject":
            forbidden.append({"tool": p.tool, "arguments": p.arguments, "rejected": True})
            if d.reason == "missing_context":
                tags.add("ambiguous")
        else:
            final = d.final_arguments or p.arguments
            actions.append(_action(_tool(workflow, p.tool, registry), p.tool, final))
    if expected_actions is not None:
        actions = _normalise_actions(workflow, expected_actions)
    if not actions and not forbidden:
        raise ValidationError(ERR_NOTHING_EXPECTED.format(id=proposal.pk), code="nothing")
    item = proposal.work_item
    try:
        case = eval_case_create(
            suite=suite,
            actor=actor,
            name=f"{item.external_id} (proposal {proposal.pk})"[:200],
            source=EvalCase.Source.DECISION,
            source_proposal=proposal,
            external_id=item.external_id,
            title=item.title,
            payload=item.payload,
            recorded_outputs=recording_from_run(run),
            expected_outcome=EvalCase.Outcome.ACT if actions else EvalCase.Outcome.AVOID,
            expected_actions=actions,
            forbidden_actions=forbidden,
            tags=sorted(tags),
        )
    except IntegrityError:  # a concurrent click won
        return EvalCase.objects.get(suite=suite, source_proposal=proposal), False
    return case, True


def _actions_taken(resolution: Any) -> list[dict[str, Any]]:
    taken = getattr(resolution, "action_taken", None) or {}
    if isinstance(taken, dict) and "actions" in taken:
        taken = taken["actions"]
    if isinstance(taken, dict):
        taken = [taken] if taken.get("tool") else []
    return [a for a in taken if isinstance(a, dict) and a.get("tool")]


def _denied_calls(run: Run | None) -> list[dict[str, Any]]:
    """Calls the runner refused (policy denial, ungranted tool): never to be proposed.

    Free text is left out of a denied call so rewording cannot dodge it. A denied call
    whose arguments were redacted in the trace (an e-mail address, say) cannot be told
    apart from a legitimate one and is left out altogether."""
    if run is None:
        return []
    workflow = run.work_item.workflow
    registry = registry_for(workflow)
    out = []
    steps = run.steps.filter(kind__in=(Step.Kind.POLICY, Step.Kind.TOOL_CALL)).exclude(error="")
    for step in steps.order_by("index"):
        if step.kind == Step.Kind.POLICY:
            loose = set(free_text_fields(_tool(workflow, step.name, registry)))
            arguments = {k: v for k, v in (step.input or {}).items() if k not in loose}
            if not _has_placeholder(arguments):
                out.append({"tool": step.name, "arguments": arguments})
        elif step.name not in BUILTIN_TOOLS or not BUILTIN_TOOLS[step.name].is_read:
            out.append({"tool": step.name, "arguments": {}})
    return out


def eval_case_from_escalation(
    *,
    escalation: Escalation,
    suite: EvalSuite | None = None,
    actor: Any,
    expected_actions: list[dict[str, Any]] | None = None,
) -> tuple[EvalCase, bool]:
    """A case from an escalation: the resolution's action_taken ({tool, arguments}, a
    list of them, or {"actions": [...]}) is the expected answer; without one the
    right answer was to escalate. Calls the runner refused are forbidden."""
    workflow = escalation.workflow
    suite = suite or eval_suite_ensure(workflow=workflow)
    if suite.workflow_id != workflow.pk:
        raise ValidationError(ERR_WRONG_WORKFLOW.format(suite=suite), code="suite")
    existing = EvalCase.objects.filter(suite=suite, source_escalation=escalation).first()
    if existing is not None:
        return existing, False
    try:
        resolution = escalation.resolution
    except ObjectDoesNotExist:
        resolution = None
    taken = expected_actions if expected_actions is not None else _actions_taken(resolution)
    actions = _normalise_actions(workflow, taken)
    run = escalation.run
    tags = {"ambiguous"} if escalation.reason == Escalation.Reason.HARD_CASE else set()
    if (escalation.packet or {}).get("injection_flags"):
        tags.add("adversarial")
    item = escalation.work_item
    try:
        case = eval_case_create(
            suite=suite,
            actor=actor,
            name=f"{item.external_id} (escalation {escalation.pk})"[:200],
            source=EvalCase.Source.ESCALATION,
            source_escalation=escalation,
            external_id=item.external_id,
            title=item.title,
            payload=item.payload,
            recorded_outputs=recording_from_run(run),
            expected_outcome=EvalCase.Outcome.ACT if actions else EvalCase.Outcome.ESCALATE,
            expected_actions=actions,
            forbidden_actions=_denied_calls(run),
            tags=sorted(tags),
        )
    except IntegrityError:
        return EvalCase.objects.get(suite=suite, source_escalation=escalation), False
    return case, True


def eval_cases_by_rule(
    *,
    workflow: Workflow,
    rule: str,
    actor: Any = "evals:rule",
    suite: EvalSuite | None = None,
    limit: int = DEFAULT_RULE_LIMIT,
) -> list[EvalCase]:
    """Add cases in bulk: all rejections, edits or accepts, the last ``limit``
    decisions, or resolved escalations. Sources already in the suite are skipped."""
    if rule not in RULES:
        raise ValidationError(
            ERR_UNKNOWN_RULE.format(rule=rule, rules=", ".join(RULES)), code="rule"
        )
    suite = suite or eval_suite_ensure(workflow=workflow)
    created: list[EvalCase] = []
    if rule == "escalations":
        escalations = (
            Escalation.objects.filter(workflow=workflow, status=Escalation.Status.RESOLVED)
            .exclude(eval_cases__suite=suite)
            .select_related("work_item", "run")
            .order_by("-created_at")[:limit]
        )
        for escalation in escalations:
            case, new = eval_case_from_escalation(escalation=escalation, suite=suite, actor=actor)
            if new:
                created.append(case)
        return created
    verdicts = {"rejections": ["reject"], "edits": ["edit"], "accepts": ["accept"]}.get(
        rule, ["accept", "edit", "reject"]
    )
    proposals = (
        Proposal.objects.filter(workflow=workflow, decision__verdict__in=verdicts)
        .select_related("decision", "run", "work_item", "workflow")
        .order_by("-decision__created_at")[:limit]
    )
    for proposal in proposals:
        case, new = eval_case_from_decision(decision=proposal.decision, suite=suite, actor=actor)
        if new:
            created.append(case)
    return created
