"""The gate for outside agents: one tool call in, one answer out, by the tool's level.

An outside agent (a script, the OpenAI Agents SDK, LangGraph, an MCP client through
Tenure's MCP gateway) sends each tool call it wants to make. Tenure validates it
against the workflow's registered tools, applies the policy, the caps and the
per-run budgets, records it exactly as it records its own agent's proposals (a work
item, a run with its trace, a proposal or an escalation, audit events), and answers:

| tool's level | answer |
|---|---|
| shadow | ``recorded``: a proposal for a reviewer, never executed |
| supervised | ``pending``: executes once a reviewer approves (poll, long-poll, callback) |
| limited and up | ``executed`` with the tool's result when inside the caps, else ``pending`` |
| any, policy denies | ``denied`` with the rule |

A retry with the same ``Idempotency-Key`` returns the answer of the first call as
it stands now and never acts twice: the key is unique per workflow in the database
(``GateCall``), and an execution goes through ``proposal_execute`` whose own key is
unique too. A paused (or off) workflow refuses new calls with ``GateRefused``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from pydantic import ValidationError

from agents.injection import injection_scan
from agents.models import (
    Escalation,
    Execution,
    GateCall,
    Proposal,
    Run,
    Step,
    WorkItem,
)
from agents.notifications import notify_escalation
from agents.policy import PolicyVerdict, grant_level, policy_evaluate
from agents.runner import RISK_PRIORITY
from agents.services.execution import proposal_execute
from agents.services.plans import _decision
from agents.services.work_items import payload_check
from agents.tools import ToolError, arguments_hash, canonical_json, registry_for
from governance import sql as governance_sql
from governance import sqlkit
from governance.audit import audit_append
from governance.models import AutonomyLevel, Workflow

logger = logging.getLogger(__name__)

MAX_KEY_LENGTH = 190  # the work item's external id is "gate:" + the key (200 at most)
MAX_WAIT_SECONDS = 30
POLL_INTERVAL = 0.2
AGENT_VERSION = "outside-agent"
SIGNATURE_HEADER = "X-Tenure-Signature"
TIMESTAMP_HEADER = "X-Tenure-Timestamp"

# Answers, stable strings a client branches on.
RECORDED = "recorded"
PENDING = "pending"
EXECUTED = "executed"
DENIED = "denied"
REJECTED = "rejected"
FAILED = "failed"
CANCELLED = "cancelled"

ERR_KEY_MISSING = "Send an Idempotency-Key header: a retry with the same key never acts twice."
ERR_KEY_TOO_LONG = f"The Idempotency-Key header is longer than {MAX_KEY_LENGTH} characters."
ERR_PAUSED = "The workflow “{slug}” is paused (kill switch): no tool call is accepted or run."
ERR_OFF = "The workflow “{slug}” is off: no tool call is accepted."
ERR_UNKNOWN_TOOL = "{tool} is not a tool of the workflow “{slug}” (registered and granted)."
ERR_INVALID_ARGUMENTS = "The arguments do not validate against {tool}'s schema; see details."
ERR_CONFLICT = (
    "A call with this Idempotency-Key was already sent with a different body. "
    "A retry must send the same call; a new call needs a new key."
)
ERR_CALLBACK_HOST = (
    "The callback host “{host}” is not on the allowed list (TENURE_GATE_CALLBACK_HOSTS)."
)
ERR_CALLBACK_URL = "The callback URL must be an http(s) URL."
RULE_RUN_BUDGET = (
    "Run budget: the agent run {run} already sent {done} tool calls (at most {cap} a run); denied."
)
RULE_LOOP = "Loop: the agent run {run} sent {tool} with the same arguments {done} times; denied."
RULE_FLAGGED_CONTEXT = (
    "The untrusted input the agent saw looks like an injection ({kinds}): a human approves."
)
NOTE_RECORDED = "Recorded as a proposal for human review; not executed (shadow mode)."
NOTE_PENDING = (
    "Waiting for a reviewer's approval; poll, long-poll with ?wait=N, or await the callback."
)
NOTE_APPROVED = "Approved; the execution is on its way."
NOTE_PAUSED_HELD = "Held: the workflow is paused; it runs after a resume if still approved."


class GateError(Exception):
    """A call the gate refuses before recording anything, with its HTTP status."""

    status = 422
    code = "validation_failed"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message, self.details = message, details


class GateInvalid(GateError):
    pass


class GateConflict(GateError):
    status = 409
    code = "conflict"


class GateRefused(GateError):
    """The kill switch (or a workflow switched off): nothing is recorded or run."""

    status = 409
    code = "workflow_paused"


@dataclass(frozen=True)
class GateRequest:
    tool: str
    arguments: dict[str, Any]
    agent_run_id: str
    idempotency_key: str
    step_id: str = ""
    context: dict[str, Any] | None = None  # {"input": ..., "trusted": bool}
    callback_url: str = ""
    channel: str = GateCall.Channel.API
    extra: dict[str, Any] = field(default_factory=dict)

    def request_hash(self) -> str:
        body = {
            "tool": self.tool,
            "arguments": self.arguments,
            "agent_run_id": self.agent_run_id,
            "step_id": self.step_id,
            "context": self.context,
            "callback_url": self.callback_url,
        }
        return hashlib.sha256(canonical_json(body).encode()).hexdigest()


# --- answers ----------------------------------------------------------------------


def gate_answer(call: GateCall, *, fresh: bool = False) -> dict[str, Any]:
    """The call's answer as it stands now (the same for every retry of its key).
    ``fresh``: just recorded in this request, so nobody decided it yet."""
    base: dict[str, Any] = {
        "id": call.pk,
        "workflow": call.workflow.slug,
        "tool": call.tool,
        "agent_run_id": call.agent_run_id,
        "step_id": call.step_id,
        "idempotency_key": call.idempotency_key,
        "work_item_id": call.work_item_id,
        "proposal_id": call.proposal_id,
        "executed": False,
    }
    if call.proposal_id is None:
        return {**base, "status": DENIED, "rule": call.denied_rule, "level": None}
    proposal = call.proposal
    base.update(
        level=proposal.autonomy_level,
        verdict=proposal.verdict,
        rule=proposal.verdict_rule,
        arguments=proposal.arguments,
        arguments_hash=proposal.arguments_hash,
    )
    decision = None if fresh else _decision(proposal)
    if decision is not None:
        base["decision"] = {
            "verdict": decision.verdict,
            "final_arguments": decision.final_arguments or None,
            "decided_at": decision.created_at,
        }
    if proposal.autonomy_level == AutonomyLevel.SHADOW:
        # Never executed: the reviewer records what the human really did.
        return {**base, "status": RECORDED, "note": NOTE_RECORDED}
    status = proposal.status
    if status == Proposal.Status.EXECUTED:
        execution = proposal.executions.filter(status=Execution.Status.SUCCEEDED).first()
        return {
            **base,
            "status": EXECUTED,
            "executed": True,
            "result": execution.result if execution else None,
            "auto": bool(execution and execution.auto),
            "execution_idempotency_key": execution.idempotency_key if execution else "",
        }
    if status == Proposal.Status.EXECUTION_FAILED:
        execution = proposal.executions.order_by("-created_at").first()
        error = execution.error if execution else ""
        return {**base, "status": FAILED, "error": error}
    if status == Proposal.Status.REJECTED:
        return {**base, "status": REJECTED}
    if status == Proposal.Status.CANCELLED:
        return {**base, "status": CANCELLED}
    note = NOTE_APPROVED if status in (Proposal.Status.ACCEPTED, Proposal.Status.EDITED) else ""
    if call.workflow.paused:
        note = NOTE_PAUSED_HELD
    return {**base, "status": PENDING, "note": note or NOTE_PENDING}


def gate_call_get(*, workflow: Workflow, call_id: int) -> GateCall | None:
    return (
        GateCall.objects.select_related("workflow", "proposal", "proposal__workflow")
        .filter(workflow=workflow, pk=call_id)
        .first()
    )


def gate_wait(*, call: GateCall, seconds: float) -> dict[str, Any]:
    """The answer, waiting up to ``seconds`` (bounded) while it is pending."""
    deadline = time.monotonic() + max(0.0, min(float(seconds), MAX_WAIT_SECONDS))
    while True:
        gate_settle(call)
        answer = gate_answer(call)
        if answer["status"] != PENDING or time.monotonic() >= deadline:
            return answer
        time.sleep(POLL_INTERVAL)
        call = gate_call_get(workflow=call.workflow, call_id=call.pk) or call


def gate_settle(call: GateCall) -> None:
    """An auto-allowed action not yet run (its first request died, or a concurrent
    retry got here first): run it now. ``proposal_execute`` is idempotent, so any
    number of retries execute it once."""
    proposal = call.proposal
    if proposal is None or proposal.status != Proposal.Status.PENDING:
        return
    if not proposal.auto_executed or call.workflow.paused:
        return
    try:
        proposal_execute(proposal_id=proposal.pk)
    except ToolError:
        # Transient (timeouts, 5xx): the execution keeps its key; the sweeper or the
        # agent's next poll tries again.
        logger.warning("gate call %s: execution deferred", call.pk, exc_info=True)
    proposal.refresh_from_db()


# --- submitting a call --------------------------------------------------------------------


def _check_callback(url: str) -> None:
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GateInvalid(ERR_CALLBACK_URL)
    allowed = {h.lower() for h in getattr(settings, "TENURE_GATE_CALLBACK_HOSTS", [])}
    if parts.hostname.lower() not in allowed:
        raise GateInvalid(ERR_CALLBACK_HOST.format(host=parts.hostname))


def _existing(workflow: Workflow, request: GateRequest) -> GateCall | None:
    call = (
        GateCall.objects.select_related("workflow", "proposal", "proposal__workflow")
        .filter(workflow=workflow, idempotency_key=request.idempotency_key)
        .first()
    )
    if call is not None and call.request_hash != request.request_hash():
        raise GateConflict(ERR_CONFLICT, {"id": call.pk})
    return call


def _budget_rule(workflow: Workflow, request: GateRequest, clean: dict[str, Any]) -> str:
    """Per agent run: at most ``max_tool_calls`` calls, and no call repeated
    ``loop_threshold`` times (the runner's budgets, applied to an outside run)."""
    calls = GateCall.objects.filter(workflow=workflow, agent_run_id=request.agent_run_id)
    done = calls.count()
    if done >= workflow.max_tool_calls:
        return RULE_RUN_BUDGET.format(
            run=request.agent_run_id, done=done, cap=workflow.max_tool_calls
        )
    if done and workflow.loop_threshold:
        same = calls.filter(tool=request.tool, proposal__arguments_hash=arguments_hash(clean))
        repeats = same.count()
        if repeats >= workflow.loop_threshold:
            return RULE_LOOP.format(run=request.agent_run_id, tool=request.tool, done=repeats)
    return ""


def _prepare(
    *, workflow: Workflow, request: GateRequest
) -> tuple[Any, dict[str, Any], dict[str, Any], list[dict[str, str]], PolicyVerdict, str]:
    """Check one call before it is recorded: the kill switch, the tool, its arguments,
    the callback, the payload limits, then the run budget and the policy verdict.
    Raises a ``GateError`` for a call the gate refuses outright."""
    # The grant and the pause flag in one statement (FOR SHARE: a pause that is
    # committing is waited for, never read around). The workflow's level was read
    # with the token's scope, in this request.
    grant, paused = governance_sql.grant_and_pause(workflow.pk, request.tool)
    if paused:
        raise GateRefused(ERR_PAUSED.format(slug=workflow.slug))
    if workflow.autonomy_level == AutonomyLevel.OFF:
        raise GateRefused(ERR_OFF.format(slug=workflow.slug))
    enabled = {request.tool} if grant is not None and grant.enabled else set()
    # Only the tool asked for is loaded (a schema-registered one is built from its row).
    tool = registry_for(workflow, granted=enabled).get(request.tool)
    if tool is None:
        grants = governance_sql.grants_of(workflow.pk)
        registry = registry_for(workflow, granted={n for n, g in grants.items() if g.enabled})
        raise GateInvalid(
            ERR_UNKNOWN_TOOL.format(tool=request.tool, slug=workflow.slug),
            {"tools": sorted(registry)},
        )
    try:
        args = tool.validate(request.arguments)
    except ValidationError as exc:
        fields = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()
        ]
        raise GateInvalid(ERR_INVALID_ARGUMENTS.format(tool=tool.name), fields) from exc
    _check_callback(request.callback_url)
    clean = args.model_dump(mode="json")
    context = request.context or {}
    payload: dict[str, Any] = {
        "gate": {
            "agent_run_id": request.agent_run_id,
            "step_id": request.step_id,
            "tool": tool.name,
            "channel": request.channel,
        },
        "arguments": clean,
    }
    flags: list[dict[str, str]] = []
    if "input" in context:
        if context.get("trusted"):
            payload["context"] = context["input"]
        else:
            # Untrusted input is data: scanned, shown escaped, never grounds a value.
            payload["text"] = context["input"]
            flags = injection_scan(context["input"], source="context")
    try:
        payload_check(payload)
    except DjangoValidationError as exc:
        raise GateInvalid(exc.messages[0], dict(getattr(exc, "params", None) or {})) from exc
    tool_level = grant_level(workflow, grant)
    rule = _budget_rule(workflow, request, clean)
    verdict = (
        PolicyVerdict(Proposal.Verdict.DENY, rule, ((Proposal.Verdict.DENY, rule),))
        if rule
        else policy_evaluate(workflow=workflow, tool=tool, args=args, grant=grant)
    )
    if flags and verdict.verdict == Proposal.Verdict.ALLOW:
        kinds = ", ".join(sorted({f.get("kind", "?") for f in flags}))
        why = RULE_FLAGGED_CONTEXT.format(kinds=kinds)
        verdict = PolicyVerdict(Proposal.Verdict.NEEDS_APPROVAL, why, verdict.rules)
    return tool, clean, payload, flags, verdict, tool_level


def gate_submit(
    *, workflow: Workflow, request: GateRequest, principal: str
) -> tuple[dict[str, Any], bool]:
    """Record (or find) one call and answer it. Returns (answer, created)."""
    key = request.idempotency_key.strip()
    if not key:
        raise GateInvalid(ERR_KEY_MISSING)
    if len(key) > MAX_KEY_LENGTH:
        raise GateInvalid(ERR_KEY_TOO_LONG)
    try:
        prepared = _prepare(workflow=workflow, request=request)
    except GateError:
        # A retry answers as the first call did, even when it would be refused now
        # (paused since, the tool's grant changed): the lookup costs a query only here,
        # and when the insert below finds the key taken.
        existing = _existing(workflow, request)
        if existing is None:
            raise
        gate_settle(existing)
        return gate_answer(existing), False
    tool, clean, payload, flags, verdict, tool_level = prepared
    try:
        with transaction.atomic():
            call = _record(
                workflow=workflow,
                request=request,
                principal=principal,
                tool=tool,
                clean=clean,
                payload=payload,
                flags=flags,
                verdict=verdict,
                level=tool_level,
            )
    except IntegrityError:
        # A concurrent request with the same key committed first: answer as it did.
        existing = _existing(workflow, request)
        if existing is None:
            raise
        gate_settle(existing)
        return gate_answer(existing), False
    if call.proposal is not None and call.proposal.auto_executed:
        gate_settle(call)
        return gate_answer(call), True
    return gate_answer(call, fresh=True), True


def _record(
    *,
    workflow: Workflow,
    request: GateRequest,
    principal: str,
    tool: Any,
    clean: dict[str, Any],
    payload: dict[str, Any],
    flags: list[dict[str, str]],
    verdict: PolicyVerdict,
    level: str,
) -> GateCall:
    """Inside a transaction: the call, its work item, run, trace and proposal (or
    escalation), and the audit event. The call's row goes in first: a concurrent
    request with the same key waits on its unique index, then fails and reads it."""
    now = timezone.now()
    denied = verdict.verdict == Proposal.Verdict.DENY
    auto = (
        not denied
        and verdict.verdict == Proposal.Verdict.ALLOW
        and AutonomyLevel.rank(level) >= AutonomyLevel.rank(AutonomyLevel.LIMITED)
    )
    if denied:
        item_status = WorkItem.Status.ESCALATED
    elif auto:
        item_status = WorkItem.Status.EXECUTING
    else:
        item_status = WorkItem.Status.AWAITING_REVIEW
    sla = now + timedelta(minutes=workflow.review_sla_minutes)
    # The work item goes in first: its (workflow, external id) is unique, so a
    # concurrent request with the same key waits on that index, then fails and reads
    # what this one committed. Hand-written inserts (governance.sqlkit): this runs on
    # every call an outside agent makes.
    item = WorkItem(
        workflow=workflow,
        external_id=f"gate:{request.idempotency_key}",
        title=f"{tool.name} · agent run {request.agent_run_id}"[:300],
        payload=payload,
        source=WorkItem.Source.API,
        source_principal=principal[:150],
        status=item_status,
        sla_due_at=None if denied else sla,
    )
    sqlkit.insert([item])
    run = Run(
        work_item=item,
        attempt=1,
        status=Run.Status.ESCALATED if denied else Run.Status.PROPOSED,
        stop_reason=Run.StopReason.POLICY_DENIED if denied else Run.StopReason.COMPLETED,
        autonomy_level=workflow.autonomy_level,
        model=AGENT_VERSION,
        agent_version=AGENT_VERSION,
        tool_calls=1,
        started_at=now,
        finished_at=now,
        state={
            "gate": {
                "agent_run_id": request.agent_run_id,
                "step_id": request.step_id,
                "channel": request.channel,
                "principal": principal,
            },
            "injection_flags": flags,
        },
    )
    sqlkit.insert([run])
    sqlkit.insert(
        [
            Step(
                run=run,
                index=1,
                kind=Step.Kind.TOOL_CALL,
                name=tool.name,
                input={"arguments": clean, "step_id": request.step_id},
                output={"context_trusted": bool((request.context or {}).get("trusted"))},
            ),
            Step(
                run=run,
                index=2,
                kind=Step.Kind.POLICY,
                name=tool.name,
                input=clean,
                output=verdict.as_dict(),
                error=verdict.rule if denied else "",
            ),
        ]
    )
    call = GateCall(
        workflow=workflow,
        idempotency_key=request.idempotency_key,
        channel=request.channel,
        agent_run_id=request.agent_run_id[:200],
        step_id=request.step_id[:200],
        tool=tool.name,
        request_hash=request.request_hash(),
        callback_url=request.callback_url,
        principal=principal[:150],
        work_item=item,
    )
    if denied:
        call.denied_rule = verdict.rule
        escalation = Escalation.objects.create(
            workflow=workflow,
            work_item=item,
            run=run,
            reason=Escalation.Reason.POLICY_DENIED,
            detail=verdict.rule[:5000],
            packet={
                "work_item": {"id": item.pk, "external_id": item.external_id},
                "stop_reason": Run.StopReason.POLICY_DENIED,
                "detail": verdict.rule,
                "policy": verdict.rule,
                "proposed_before_stop": [
                    {"tool": tool.name, "arguments": clean, "verdict": verdict.verdict}
                ],
                "injection_flags": flags,
                "gate": payload["gate"],
            },
        )
        notify_escalation(escalation)
        sqlkit.insert([call])
        audit_append(
            action="agent.gate.denied",
            actor=principal,
            workflow=workflow,
            obj=call,
            data={"tool": tool.name, "rule": verdict.rule[:500], "run": request.agent_run_id},
        )
        return call
    proposal = Proposal(
        run=run,
        workflow=workflow,
        work_item=item,
        sequence=1,
        tool=tool.name,
        arguments=clean,
        arguments_hash=arguments_hash(clean),
        rationale=str((request.extra or {}).get("rationale", ""))[:2000],
        risk_class=tool.risk_class,
        verdict=verdict.verdict,
        verdict_rule=verdict.rule,
        injection_flags=flags,
        flagged_injection=bool(flags),
        autonomy_level=level,
        auto_executed=auto,
        priority=RISK_PRIORITY.get(tool.risk_class, 10),
        sla_due_at=sla,
    )
    sqlkit.insert([proposal])
    call.proposal = proposal
    sqlkit.insert([call])
    audit_append(
        action="agent.gate.recorded",
        actor=principal,
        workflow=workflow,
        obj=call,
        data={
            "tool": tool.name,
            "proposal": proposal.pk,
            "verdict": verdict.verdict,
            "level": level,
            "auto_execute": auto,
            "run": request.agent_run_id,
        },
    )
    return call


# --- callbacks --------------------------------------------------------------------------


def callback_sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def callback_secret() -> str:
    return str(getattr(settings, "TENURE_GATE_CALLBACK_SECRET", "") or settings.SECRET_KEY)


def gate_callback_send(*, call_id: int) -> bool:
    """POST the settled answer to the call's callback URL, signed (HMAC-SHA256 of
    ``timestamp.body``), once. Returns whether it was sent."""
    import httpx

    call = GateCall.objects.select_related("workflow", "proposal").filter(pk=call_id).first()
    if call is None or not call.callback_url or call.callback_sent_at is not None:
        return False
    answer = gate_answer(call)
    if answer["status"] == PENDING:
        return False
    body = json.dumps(answer, default=str, sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: callback_sign(callback_secret(), timestamp, body),
    }
    try:
        _check_callback(call.callback_url)
        response = httpx.post(call.callback_url, content=body, headers=headers, timeout=5)
        response.raise_for_status()
    except (httpx.HTTPError, GateInvalid):
        logger.warning("gate call %s: callback failed", call.pk, exc_info=True)
        return False
    GateCall.objects.filter(pk=call.pk, callback_sent_at__isnull=True).update(
        callback_sent_at=timezone.now()
    )
    return True


def gate_callbacks_due(*, limit: int = 200) -> list[int]:
    """Calls with a callback URL not sent yet whose proposal has settled (or that were
    denied): what ``gate_callbacks_send`` posts."""
    open_statuses = (Proposal.Status.PENDING, Proposal.Status.ACCEPTED, Proposal.Status.EDITED)
    return list(
        GateCall.objects.filter(callback_sent_at__isnull=True)
        .exclude(callback_url="")
        .exclude(proposal__status__in=open_statuses)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )


def gate_callbacks_send() -> int:
    """Periodic (beat): post every due callback once. Returns how many were sent."""
    return sum(1 for call_id in gate_callbacks_due() if gate_callback_send(call_id=call_id))
