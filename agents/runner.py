"""The agent runner: one work item -> a Run with its trace -> Proposals or an Escalation.

Safety is in code, not in the prompt: the registry holds only granted tools,
arguments are validated (retried once, then escalated), policy runs on the
validated arguments, read tools are the only ones that run here, budgets and
loop detection stop the run, and the kill switch is re-read before every model
call and every tool call.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from pydantic import BaseModel, ValidationError

from agents import prompts, states, throttle
from agents import sql as agents_sql
from agents.budgets import BudgetTripped, RunBudget, workflow_spend_today
from agents.injection import flags_merge, injection_scan, work_item_flags
from agents.jsonsafe import error_text, json_safe
from agents.llm import (
    LOW_CONFIDENCE,
    ModelClient,
    ModelError,
    ModelResponse,
    client_for,
    model_complete,
    models_for,
    route_is_hard,
)
from agents.models import (
    Escalation,
    Proposal,
    RiskClass,
    Run,
    Step,
    WorkItem,
)
from agents.notifications import notify_approval_requests, notify_escalation
from agents.policy import PolicyVerdict, grant_level, policy_evaluate
from agents.prices import ERR_UNPRICED, price_table
from agents.principals import principal_for
from agents.provenance import AutoDecision, ToolOutput, auto_execute_decision, provenance_of
from agents.redaction import redact
from agents.roles import NO_ROLES, ArgRoles, roles_for
from agents.services.plans import proposals_auto_execute
from agents.tools import Tool, ToolContext, ToolError, arguments_hash, registry_for
from agents.tracing import run_root_dispatch, step_emit
from governance import privacy, sqlkit
from governance import sql as governance_sql
from governance.audit import audit_append
from governance.models import AutonomyLevel

logger = logging.getLogger(__name__)

ERR_UNGRANTED = "The tool {tool} is not granted to this workflow; refused and not executed."
ERR_INVALID_JSON = "The arguments are not valid JSON: {error}"
ERR_INVALID_AFTER_RETRY = "{tool}: arguments still invalid after one retry."
ERR_PAUSED = "The workflow was paused; the run stopped before its next step."
ERR_OFF = "The workflow is off; the run stopped before its next step."
ERR_NO_ACTION = "The agent proposed no action."
ERR_REFUSED = "The model refused the work item."
ERR_LOW_CONFIDENCE = "The agent's confidence ({confidence}) is below {floor}: a human decides."
ERR_READ_TOOL_FAILED = "{tool} failed: {error}"
PROPOSED_NOTE = "Recorded as a proposal for human review; not executed."
ERR_DEAD_LETTER = (
    "Dead letter: the run did not finish in {attempts} attempt(s) (TENURE_RUN_MAX_ATTEMPTS="
    "{max_attempts}); last error {error_class}: {error_message}"
)
ERR_WORKER_LOST = "The worker running this item stopped before the run ended (killed or restarted)."
WORKER_LOST = "WorkerLost"
# A crashed run is tried again after this many seconds, doubling each time (capped).
CRASH_RETRY_SECONDS = 15
CRASH_RETRY_MAX_SECONDS = 300
# A RUNNING run older than its budget plus this grace is presumed dead and restarted.
STALE_GRACE_SECONDS = 60
READ_CACHE_PREFIX = "tenure:tool:v1:"
MAX_MODEL_TURNS = 12
DAILY_SPEND_REFRESH_SECONDS = 10

RISK_PRIORITY = {
    RiskClass.READ: 0,
    RiskClass.WRITE: 20,
    RiskClass.EXTERNAL_MESSAGE: 40,
    RiskClass.MONEY: 50,
    RiskClass.ACCESS: 60,
    RiskClass.DELETE: 70,
}


class RunBusy(Exception):  # a state, not a bug
    """A live worker is running this item; try again after its budget runs out."""

    def __init__(self, retry_in: int) -> None:
        super().__init__(f"run in progress; retry in {retry_in}s")
        self.retry_in = retry_in


class RunStopped(Exception):  # a stop, not a bug
    def __init__(
        self,
        stop_reason: str,
        reason: str,
        detail: str,
        *,
        policy: str = "",
        budget: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.stop_reason, self.reason, self.detail = stop_reason, reason, detail
        self.policy, self.budget = policy, budget or {}
        self.extra = extra or {}  # more of the packet (a dead letter's errors)


@dataclass
class Candidate:
    tool: Tool
    args: BaseModel
    arguments: dict[str, Any]
    verdict: PolicyVerdict
    level: str
    roles: ArgRoles = NO_ROLES
    # {arg_path: {"role", "value", "source", ...}}: agents.provenance
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RunState:
    messages: list[dict[str, Any]]
    candidates: list[Candidate] = field(default_factory=list)
    tool_outputs: list[dict[str, Any]] = field(default_factory=list)
    # The read tools' outputs in this run, as provenance sources.
    read_outputs: list[ToolOutput] = field(default_factory=list)
    citations: list[str] = field(default_factory=list)
    retried: set[str] = field(default_factory=set)
    large: bool = False
    last_content: str = ""
    final: dict[str, Any] = field(default_factory=dict)


class _GuardedClient:
    """A model client that runs a check (the kill switch) right before each request,
    honours the endpoint's rate limits, and gives the database connection back while
    the model thinks (agents.throttle)."""

    def __init__(self, inner: ModelClient, guard: Any, runner: Runner) -> None:
        self.inner, self.guard, self.runner = inner, guard, runner

    def complete(self, **kwargs: Any) -> ModelResponse:
        self.guard()
        if self.runner.request_prepaid:
            self.runner.request_prepaid = False  # taken before the run was claimed
        elif throttle.model_wait_for_request():
            self.guard()  # a pause that committed while this waited still wins
        with throttle.db_released():
            response = self.inner.complete(**kwargs)
        throttle.model_tokens_charge(response.tokens_in + response.tokens_out)
        return response


class Runner:
    # Identical requests are answered from the request cache (agents.llm); a replay
    # of the regression suite turns this off to hear the model as it answers today.
    use_model_cache = True

    def __init__(self, run: Run, *, client: ModelClient | None = None) -> None:
        self.run = run
        self.item = run.work_item
        self.workflow = self.item.workflow
        # The agent and its tools work on the values; what the run writes (steps,
        # proposals, packets, its state) carries the subject's tokens instead.
        self.vault = privacy.vault_for(self.item.payload)
        self.data_policy = privacy.policy_of(self.workflow)
        if self.vault.tokens:
            self.item.payload = self.vault.reveal(self.item.payload)
            self.item.title = self.vault.reveal(self.item.title)
        self.client = client
        self.small, self.large_model = models_for(self.workflow)
        self.budget = RunBudget.for_workflow(self.workflow)
        self.grants = governance_sql.grants_of(self.workflow.pk)
        self.registry = registry_for(
            self.workflow, granted={name for name, g in self.grants.items() if g.enabled}
        )
        self.step_index = 0
        self.trace: list[Step] = []
        self.unsaved: list[Step] = []
        self.principal = principal_for(self.workflow)
        # One price table for the whole run (agents.prices: re-read when a price changes).
        self.prices = price_table()
        # Only untrusted text is scanned: the fields the integration did not declare
        # trusted, and (below) the outputs of tools that declare theirs untrusted.
        self.flags = work_item_flags(
            title=self.item.title,
            payload=self.item.payload,
            trusted_fields=self.workflow.trusted_fields or (),
        )
        self.models_used: list[str] = []
        self.tool_call_id = ""  # the model's id of the call being handled (for its spans)
        self.spend_read_at: float | None = None  # when the workflow's spend was last read
        self.state = RunState(messages=prompts.initial_messages(self.item))
        # The first model request was taken from the rate limit before the claim.
        self.request_prepaid = False

    # --- trace ------------------------------------------------------------
    def step(self, kind: str, name: str, **fields: Any) -> Step:
        self.step_index += 1
        for key in ("input", "output"):
            if key in fields:
                # What PostgreSQL refuses (NaN, NUL) or a walk cannot survive (deep
                # nesting) never reaches the trace: a run never fails on its own record.
                fields[key] = self.vault.protect(redact(json_safe(fields[key])))
        if fields.get("error"):
            fields["error"] = self.vault.protect(fields["error"])
        step = Step(run=self.run, index=self.step_index, kind=kind, name=name, **fields)
        self.trace.append(step)
        self.unsaved.append(step)
        # Its span leaves now, not when the run ends (if tracing is on).
        step_emit(run=self.run, step=step, tool_call_id=self.tool_call_id)
        return step

    def flush_steps(self) -> None:
        """Steps are buffered and written in bulk before each model call and in the
        run's final transaction: a run whose worker dies restarts from a clean trace,
        so a tool call costs no commit of its own."""
        if self.unsaved:
            sqlkit.insert(self.unsaved)  # one multi-row INSERT
            self.unsaved = []

    # --- kill switch ----------------------------------------------------------
    def ensure_running(self) -> None:
        """Re-read the flag from the database: a pause that has committed wins.

        FOR SHARE (PostgreSQL) waits for a pause that is committing, instead of reading
        the row as it was before it: a check never passes while a pause is in flight."""
        paused, level = governance_sql.workflow_state(self.workflow.pk)
        if paused:
            raise RunStopped(Run.StopReason.PAUSED, Escalation.Reason.PAUSED, ERR_PAUSED)
        if level == AutonomyLevel.OFF:
            raise RunStopped(Run.StopReason.PAUSED, Escalation.Reason.PAUSED, ERR_OFF)

    # --- the loop ---------------------------------------------------------------
    def execute(self) -> Run:
        tools_json = prompts.tools_payload(list(self.registry.values()))
        self.state.large = route_is_hard(self.item.text)
        if self.flags:
            self.step(Step.Kind.NOTE, "injection_flags", output={"flags": self.flags})
        try:
            for _turn in range(MAX_MODEL_TURNS):
                response = self.call_model(tools_json)
                if response.refused:
                    if not self.state.large:
                        self.state.large = True
                        continue
                    raise RunStopped(
                        Run.StopReason.REFUSAL, Escalation.Reason.MODEL_ERROR, ERR_REFUSED
                    )
                if not response.tool_calls:
                    final = prompts.parse_final(response.content)
                    confidence = final["confidence"]
                    low = confidence is None or confidence < LOW_CONFIDENCE
                    if (low or final["escalate"]) and not self.state.large:
                        # The cascade: let the large model have the last word.
                        self.state.large = True
                        self.state.messages.append(
                            {"role": "assistant", "content": response.content}
                        )
                        self.state.messages.append(
                            {"role": "user", "content": "Review the work item again and answer."}
                        )
                        continue
                    self.state.final = final
                    break
                self.handle_tool_calls(response)
            else:
                raise BudgetTripped(
                    Run.StopReason.BUDGET_TOOL_CALLS,
                    f"No final answer after {MAX_MODEL_TURNS} model turns.",
                    f"max_model_turns={MAX_MODEL_TURNS}",
                )
            return self.finish()
        except BudgetTripped as trip:
            self.step(
                Step.Kind.BUDGET, trip.stop_reason, output=self.budget.snapshot(), error=trip.detail
            )
            reason = (
                Escalation.Reason.LOOP
                if trip.stop_reason == Run.StopReason.LOOP
                else Escalation.Reason.BUDGET
            )
            return self.escalate(
                RunStopped(
                    trip.stop_reason,
                    reason,
                    trip.detail,
                    budget={"tripped": trip.budget, **self.budget.snapshot()},
                )
            )
        except RunStopped as stop:
            if stop.stop_reason == Run.StopReason.PAUSED:
                self.step(Step.Kind.NOTE, "paused", error=stop.detail)
            return self.escalate(stop)
        except ModelError as exc:
            self.step(Step.Kind.MODEL_CALL, "error", error=str(exc))
            return self.escalate(
                RunStopped(Run.StopReason.MODEL_ERROR, Escalation.Reason.MODEL_ERROR, str(exc))
            )

    def call_model(self, tools_json: list[dict[str, Any]]) -> ModelResponse:
        self.budget.check_clock()
        self.flush_steps()  # the trace so far is visible while the model thinks
        self.ensure_running()
        # The workflow's daily budget, across its runs. What the other runs spent is
        # an aggregate over today's runs: read before the first model call and again
        # when DAILY_SPEND_REFRESH_SECONDS have passed, so a long run sees the spend
        # of runs that finished meanwhile; this run's own spend is counted as it goes.
        now = time.monotonic()
        if self.spend_read_at is None or now - self.spend_read_at > DAILY_SPEND_REFRESH_SECONDS:
            self.spend_read_at = now
            self.budget.spent_today = workflow_spend_today(
                workflow=self.workflow, exclude_run_id=self.run.pk
            )
        self.budget.check_daily()
        model = self.large_model if self.state.large else self.small
        # A model without a price (and no fallback price) never gets called: its cost
        # could not be budgeted. The run stops before spending anything on it.
        price = self.prices.price_for(model)
        if price is None:
            raise BudgetTripped(
                Run.StopReason.UNPRICED_MODEL,
                ERR_UNPRICED.format(model=model),
                f"model_price={model}",
            )
        # And once more right before the request leaves (after the cache lookup and
        # the client's set-up): a pause that commits meanwhile still stops the call.
        client = _GuardedClient(self.client or client_for(model), self.ensure_running, self)
        response = model_complete(
            model=model,
            messages=self.state.messages,
            tools=tools_json,
            client=client,
            use_cache=self.use_model_cache,
        )
        # A response from the request cache cost nothing this time.
        billed = not response.cached
        tokens_in = response.tokens_in if billed else 0
        tokens_cached = min(response.tokens_cached, tokens_in) if billed else 0
        tokens_out = response.tokens_out if billed else 0
        cost = price.cost(tokens_in=tokens_in, tokens_cached=tokens_cached, tokens_out=tokens_out)
        unpriced = billed and price.fallback
        if response.cached:
            self.run.cache_hits += 1
        else:
            self.run.cache_misses += 1
        self.run.tokens_in += tokens_in
        self.run.tokens_cached += tokens_cached
        self.run.tokens_out += tokens_out
        self.run.cost_usd += cost
        self.run.unpriced = self.run.unpriced or unpriced
        self.models_used.append(model)
        self.step(
            Step.Kind.MODEL_CALL,
            model,
            input={"messages": len(self.state.messages), "last": self.state.messages[-1]},
            output={
                "content": response.content,
                "refusal": response.refusal,
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": c.arguments}
                    for c in response.tool_calls
                ],
                "finish_reason": response.finish_reason,
            },
            model=model,
            cached=response.cached,
            latency_ms=response.latency_ms,
            tokens_in=tokens_in,
            tokens_cached=tokens_cached,
            tokens_out=tokens_out,
            cost_usd=cost,
            unpriced=unpriced,
        )
        self.state.last_content = response.content
        self.budget.charge_model(tokens=tokens_in + tokens_out, cost=cost)
        return response

    def handle_tool_calls(self, response: ModelResponse) -> None:
        self.state.messages.append(
            prompts.assistant_tool_calls_message(response.content, response.tool_calls)
        )
        for call in response.tool_calls:
            self.tool_call_id = call.id
            try:
                output = self.handle_call(call.name, call.arguments)
            finally:
                self.tool_call_id = ""
            self.state.messages.append(
                prompts.tool_result_message(call_id=call.id, name=call.name, output=output)
            )

    def handle_call(self, name: str, raw_arguments: str) -> dict[str, Any]:
        try:
            arguments = json.loads(raw_arguments or "{}")
        except ValueError as exc:
            arguments = {"_raw": raw_arguments[:2000]}
            return self.invalid(name, arguments, ERR_INVALID_JSON.format(error=exc))
        self.budget.charge_tool_call(name=name, arguments=arguments)
        self.run.tool_calls += 1
        tool = self.registry.get(name)
        if tool is None:
            detail = ERR_UNGRANTED.format(tool=name)
            self.step(Step.Kind.TOOL_CALL, name, input=arguments, error=detail)
            raise RunStopped(
                Run.StopReason.UNGRANTED_TOOL, Escalation.Reason.UNGRANTED_TOOL, detail
            )
        if not isinstance(arguments, dict):
            return self.invalid(
                name, {"_raw": arguments}, ERR_INVALID_JSON.format(error="not an object")
            )
        try:
            args = tool.validate(arguments)
            self.money_validate(tool, args)
        except ValidationError as exc:
            errors = [
                {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()
            ]
            return self.invalid(name, arguments, json.dumps(errors))
        grant = self.grants.get(name)
        verdict = policy_evaluate(workflow=self.workflow, tool=tool, args=args, grant=grant)
        clean = args.model_dump(mode="json")
        self.step(
            Step.Kind.POLICY, name, input=clean, output=verdict.as_dict(),
            error=verdict.rule if verdict.verdict == Proposal.Verdict.DENY else "",
        )  # fmt: skip
        if verdict.verdict == Proposal.Verdict.DENY:
            raise RunStopped(
                Run.StopReason.POLICY_DENIED,
                Escalation.Reason.POLICY_DENIED,
                verdict.rule,
                policy=verdict.rule,
            )
        if tool.is_read:
            return self.run_read_tool(tool, args, clean)
        level = grant_level(self.workflow, grant)
        if any(c.tool.name == name and c.arguments == clean for c in self.state.candidates):
            return {"status": "proposed", "note": "Already proposed."}
        roles, provenance = self.provenance_for(tool, clean)
        self.state.candidates.append(
            Candidate(
                tool=tool,
                args=args,
                arguments=clean,
                verdict=verdict,
                level=level,
                roles=roles,
                provenance=provenance,
            )
        )
        return {"status": "proposed", "verdict": verdict.verdict, "note": PROPOSED_NOTE}

    def money_validate(self, tool: Tool, args: BaseModel) -> None:
        """Money roles the workflow's policy declares (an imported tool's) are checked
        at validation too: NaN, Infinity, zero and negatives go back to the model."""
        policy = self.workflow.policy if isinstance(self.workflow.policy, dict) else {}
        try:
            roles = roles_for(tool, policy)
        except ValueError:
            return  # a bad role path: the policy fails closed on it
        if roles.money and roles != tool.roles:
            tool.money_validate(args.model_dump(mode="json"), roles)

    def provenance_for(
        self, tool: Tool, arguments: dict[str, Any]
    ) -> tuple[ArgRoles, dict[str, dict[str, Any]]]:
        """Where each sensitive argument came from (agents.provenance). Anything that
        goes wrong here leaves the action to a human."""
        policy = self.workflow.policy if isinstance(self.workflow.policy, dict) else {}
        try:
            roles = roles_for(tool, policy)
            return roles, provenance_of(
                tool=tool.name,
                roles=roles,
                arguments=arguments,
                payload=self.item.payload,
                title=self.item.title,
                trusted_fields=self.workflow.trusted_fields or (),
                outputs=self.state.read_outputs,
                policy=policy,
                subject_owner=roles.subject_owner,
            )
        except Exception as exc:  # noqa: BLE001 - fail closed: a human decides
            logger.warning("provenance of %s failed: %s", tool.name, exc)
            error = {"role": "error", "value": type(exc).__name__, "source": "none"}
            return getattr(tool, "roles", None) or NO_ROLES, {"$": error}

    def auto_decision(self, cand: Candidate) -> AutoDecision:
        return auto_execute_decision(
            verdict=cand.verdict.verdict,
            level=cand.level,
            flagged=bool(self.flags),
            provenance=cand.provenance,
            risk_class=cand.tool.risk_class,
            roles=cand.roles,
            tool=cand.tool.name,
        )

    def invalid(self, name: str, arguments: dict[str, Any], error: str) -> dict[str, Any]:
        retry = name in self.state.retried
        self.step(Step.Kind.VALIDATION, name, input=arguments, error=error, is_retry=retry)
        if retry:
            raise RunStopped(
                Run.StopReason.INVALID_ARGUMENTS,
                Escalation.Reason.INVALID_ARGUMENTS,
                ERR_INVALID_AFTER_RETRY.format(tool=name) + " " + error,
            )
        self.state.retried.add(name)
        self.run.retries += 1
        # The cascade: a validation failure goes to the large model, with the error.
        self.state.large = True
        return {"validation_error": error, "note": "Fix the arguments and call the tool again."}

    def run_read_tool(self, tool: Tool, args: BaseModel, clean: dict[str, Any]) -> dict[str, Any]:
        self.ensure_running()
        key = f"{READ_CACHE_PREFIX}{self.workflow.pk}:{tool.name}:{arguments_hash(clean)}"
        started = time.monotonic()
        cached = tool.cacheable and (hit := cache.get(key)) is not None
        error = ""
        if cached:
            output = privacy.reveal(hit)
            self.run.cache_hits += 1
        else:
            if tool.cacheable:
                self.run.cache_misses += 1
            ctx = ToolContext(
                workflow=self.workflow, principal=self.principal, work_item=self.item, run=self.run
            )
            try:
                output = tool.run(ctx, args)
            except ToolError as exc:
                error = ERR_READ_TOOL_FAILED.format(tool=tool.name, error=exc)
                output = {"error": str(exc)}
            if tool.cacheable and not error:
                # Cached with the subject's tokens: an erasure makes them unreadable.
                cache.set(key, self.vault.protect(output), tool.cache_seconds)
        self.step(
            Step.Kind.RETRIEVAL if tool.name == "search_knowledge" else Step.Kind.TOOL_CALL,
            tool.name, input=clean, output=output, error=error, cached=bool(cached),
            latency_ms=int((time.monotonic() - started) * 1000),
        )  # fmt: skip
        if tool.name == "search_knowledge":
            for result in output.get("results", []):
                if result.get("slug") and result["slug"] not in self.state.citations:
                    self.state.citations.append(result["slug"])
        self.state.tool_outputs.append({"tool": tool.name, "arguments": clean, "output": output})
        if not error:
            self.state.read_outputs.append(
                ToolOutput(
                    tool=tool.name,
                    step=self.step_index,
                    output=output,
                    untrusted=tool.untrusted_output,
                )
            )
        self.scan_tool_output(tool, output)
        return output

    def scan_tool_output(self, tool: Tool, output: Any) -> None:
        """Flag what an untrusted output carries (a ticket body, an email). A trusted
        system of record's structured output is never scanned: it is not prose, and
        scanning its keys and values flagged every run."""
        if tool.untrusted_output:
            self.flags = flags_merge(self.flags, injection_scan(output, source=f"tool:{tool.name}"))

    # --- endings ------------------------------------------------------------------
    def _finish_fields(self) -> None:
        self.run.wall_ms = int(self.budget.elapsed * 1000)
        self.run.finished_at = timezone.now()
        if self.models_used:
            self.run.model = (
                self.large_model if self.large_model in self.models_used else self.small
            )
        self.run.state = json_safe(
            {
                **self.run.state,
                "budget": self.budget.snapshot(),
                "final": self.vault.protect(self.state.final),
                "injection_flags": self.flags,
                "models": sorted(set(self.models_used)),
            }
        )

    def _save_if_still_mine(self, *, status: str, stop_reason: str) -> bool:
        """Write the finished run only if this worker still holds it (RUNNING, same
        lease): one conditional UPDATE that both checks and locks the row. The
        fields are set on ``self.run`` only once the write happened. The
        transaction (the run's end, and its proposals after it) commits relaxed:
        lost in a server crash, the item runs again (``agents.states``)."""
        self._finish_fields()
        fields = {
            f.attname: getattr(self.run, f.attname)
            for f in Run._meta.concrete_fields
            if not f.primary_key
            and f.attname not in ("status", "created_at", "work_item_id", "attempt")
        }
        fields["stop_reason"] = stop_reason
        written = states.run_move(
            self.run.pk, to=status, lease=self.run.state.get("lease"), durable=False, **fields
        )
        if written:
            self.run.status, self.run.stop_reason = status, stop_reason
        return bool(written)

    def finish(self) -> Run:
        final = self.state.final
        if not self.state.candidates:
            reason = final.get("escalation_reason") or final.get("rationale") or ERR_NO_ACTION
            return self.escalate(
                RunStopped(Run.StopReason.NO_ACTION, Escalation.Reason.HARD_CASE, reason)
            )
        confidence = final.get("confidence")
        now = timezone.now()
        sla = now + timedelta(minutes=self.workflow.review_sla_minutes)
        citations = list(dict.fromkeys([*final.get("citations", []), *self.state.citations]))
        with transaction.atomic():
            if not self._save_if_still_mine(
                status=Run.Status.PROPOSED, stop_reason=Run.StopReason.COMPLETED
            ):
                return Run.objects.get(pk=self.run.pk)
            self.flush_steps()
            # The run's root span ends once this commits (its steps went out already).
            run_root_dispatch(run=self.run)
            proposals = []
            for sequence, cand in enumerate(self.state.candidates, start=1):
                # At limited and above, an action inside policy still waits for a
                # human unless its sensitive arguments are grounded and no injection
                # was flagged (agents.provenance.auto_execute_decision).
                decision = self.auto_decision(cand)
                verdict, rule = cand.verdict.verdict, cand.verdict.rule
                if verdict == Proposal.Verdict.ALLOW and not decision.auto:
                    verdict, rule = Proposal.Verdict.NEEDS_APPROVAL, decision.rule or rule
                stored = self.vault.protect_arguments(
                    cand.tool.name, cand.arguments, self.data_policy
                )
                proposals.append(
                    Proposal(
                        run=self.run,
                        workflow=self.workflow,
                        work_item=self.item,
                        sequence=sequence,
                        tool=cand.tool.name,
                        arguments=stored,
                        arguments_hash=arguments_hash(stored),
                        rationale=self.vault.protect(final.get("rationale", "")[:2000]),
                        confidence=Decimal(str(round(confidence, 3)))
                        if confidence is not None
                        else None,
                        citations=citations,
                        risk_class=cand.tool.risk_class,
                        verdict=verdict,
                        verdict_rule=rule,
                        provenance=self.vault.protect(cand.provenance),
                        injection_flags=self.flags,
                        flagged_injection=bool(self.flags),
                        autonomy_level=cand.level,
                        # A flag shows on the card; it does not move the item up the queue.
                        priority=RISK_PRIORITY.get(cand.tool.risk_class, 10),
                        sla_due_at=sla,
                    )
                )
            # One multi-row INSERT for the whole plan, which returns the ids.
            sqlkit.insert(proposals)
            # Each action inside its caps at limited or above runs on its own, in plan
            # order; an action that needs a human holds the ones after it until decided.
            auto = [
                p
                for p in proposals
                if p.verdict == Proposal.Verdict.ALLOW
                and AutonomyLevel.rank(p.autonomy_level)
                >= AutonomyLevel.rank(AutonomyLevel.LIMITED)
            ]
            self.item.status = (
                WorkItem.Status.EXECUTING
                if len(auto) == len(proposals)
                else WorkItem.Status.AWAITING_REVIEW
            )
            self.item.sla_due_at = sla
            states.work_item_move(self.item.pk, to=self.item.status, sla_due_at=sla)
            audit_append(
                action="agent.run.proposed",
                actor=self.principal,
                workflow=self.workflow,
                obj=self.run,
                data={
                    "work_item": self.item.external_id,
                    "proposals": [
                        {"id": p.pk, "tool": p.tool, "verdict": p.verdict} for p in proposals
                    ],
                    "read_calls": [o["tool"] for o in self.state.tool_outputs],
                    "model": self.run.model,
                    "auto_execute": [p.pk for p in auto],
                },
            )
            # Each action that waits for an approval is posted to the chat channel.
            auto_ids = {p.pk for p in auto}
            notify_approval_requests(p for p in proposals if p.pk not in auto_ids)
            if auto:
                proposals_auto_execute(proposals=auto, plan=proposals)
        return self.run

    def escalate(self, stop: RunStopped) -> Run:
        packet = {
            "work_item": {
                "id": self.item.pk,
                "external_id": self.item.external_id,
                "title": self.item.title,
                "payload": self.item.payload,
            },
            "stop_reason": stop.stop_reason,
            "detail": stop.detail,
            "steps": [
                {
                    "index": s.index,
                    "kind": s.kind,
                    "name": s.name,
                    "error": s.error,
                    "is_retry": s.is_retry,
                    "model": s.model,
                }
                for s in self.trace
            ],
            "tool_outputs": self.state.tool_outputs,
            "policy": stop.policy,
            "budget": stop.budget or self.budget.snapshot(),
            "proposed_before_stop": [
                {
                    "tool": c.tool.name,
                    "arguments": c.arguments,
                    "provenance": c.provenance,
                    "verdict": c.verdict.verdict,
                    "rule": c.verdict.rule,
                }
                for c in self.state.candidates
            ],
            "last_state": {
                "model": self.models_used[-1] if self.models_used else "",
                "last_message": self.state.last_content[:4000],
                "final": self.state.final,
            },
            "injection_flags": self.flags,
            **stop.extra,
        }
        with transaction.atomic():
            if not self._save_if_still_mine(
                status=Run.Status.ESCALATED, stop_reason=stop.stop_reason
            ):
                return Run.objects.get(pk=self.run.pk)
            self.flush_steps()
            run_root_dispatch(run=self.run)
            escalation = Escalation.objects.create(
                workflow=self.workflow,
                work_item=self.item,
                run=self.run,
                reason=stop.reason,
                detail=self.vault.protect(json_safe(stop.detail[:5000])),
                packet=self.vault.protect(redact(json_safe(packet))),
            )
            notify_escalation(escalation)
            self.item.status = WorkItem.Status.ESCALATED
            states.work_item_move(self.item.pk, to=WorkItem.Status.ESCALATED)
            audit_append(
                action="agent.run.escalated",
                actor=self.principal,
                workflow=self.workflow,
                obj=self.run,
                data={
                    "work_item": self.item.external_id,
                    "escalation": escalation.pk,
                    "reason": stop.reason,
                    "stop_reason": stop.stop_reason,
                },
            )
        return self.run


def max_attempts() -> int:
    """How many times a run is started before it ends as a dead letter (at least once)."""
    return max(1, int(getattr(settings, "TENURE_RUN_MAX_ATTEMPTS", 3)))


def crash_retry_in(starts: int) -> int:
    """Seconds before a crashed run's next attempt: doubling, capped."""
    return min(CRASH_RETRY_MAX_SECONDS, CRASH_RETRY_SECONDS * 2 ** max(0, starts - 1))


def run_claim(*, work_item_id: int) -> Run | None:
    """Start (or restart a dead or crashed) run for a work item, or return None when
    there is nothing to do. Idempotent: redelivery never makes a second run.

    Each start is counted on the run (``starts``, in the claim's own transaction, so a
    worker killed mid-run counts too); a run that has had its
    ``TENURE_RUN_MAX_ATTEMPTS`` starts is not started again but ends as a dead letter,
    so no sweep re-sends it, and pays the model for it, forever."""
    with transaction.atomic():
        item = agents_sql.item_to_claim(work_item_id)
        if item is None:
            return None
        # The usual first claim (a received item with no run) costs no second query.
        # The subquery ran on the statement's snapshot, possibly before this waited for
        # the item's lock; a claim that committed meanwhile changed the item's status,
        # which the lock does re-read, so any other state looks the run up again.
        if item.latest_run_id is None and item.status == WorkItem.Status.RECEIVED:
            run = None
        else:
            run = item.runs.order_by("-attempt").first()
        if run is not None and run.status != Run.Status.RUNNING and run.status != Run.Status.QUEUED:
            return None  # already finished: proposals or an escalation exist
        if item.status not in (WorkItem.Status.RECEIVED, WorkItem.Status.RUNNING):
            return None
        now = timezone.now()
        lease = uuid.uuid4().hex
        crashes: list[dict[str, Any]] = []
        if run is not None and run.status == Run.Status.RUNNING:
            stale_after = timedelta(seconds=item.workflow.max_seconds + STALE_GRACE_SECONDS)
            if run.started_at and run.started_at > now - stale_after:
                # Another worker is on it, or its worker just died: look again once
                # the run would be stale.
                raise RunBusy(int(stale_after.total_seconds()))
            crashes = list((run.state or {}).get("crashes", []))
            if run.starts >= max_attempts():
                # Its worker died (or its crash could not be recorded) on the last
                # attempt: it is not started again.
                run.work_item = item
                last = crashes[-1] if crashes else {}
                run_dead_letter(
                    run=run,
                    crashes=crashes,
                    error_class=last.get("error_class", WORKER_LOST),
                    error_message=last.get("error_message", ERR_WORKER_LOST),
                    lease=None,
                )
                return None
            # Its worker died, or it crashed: start the same run again from a clean
            # trace. Its spend is kept: what a crashed attempt spent was written when
            # it was released (a dead worker's attempt wrote nothing), and the
            # workflow's daily budget counts every attempt.
            run.steps.all().delete()
            run.tool_calls = run.retries = 0
            run.cache_hits = run.cache_misses = 0
        elif run is None:
            run = Run(work_item=item, attempt=1)
        run.starts += 1
        run.autonomy_level = item.workflow.autonomy_level
        run.started_at = now
        run.agent_version = prompts.AGENT_VERSION
        run.prompt_version = prompts.PROMPT_VERSION
        run.state = {"lease": lease, **({"crashes": crashes} if crashes else {})}
        # The claim commits relaxed: lost in a server crash, the item is sent again.
        states.run_start(run, durable=False)
        item.status = WorkItem.Status.RUNNING
        states.work_item_move(item.pk, to=WorkItem.Status.RUNNING, updated_at=now, durable=False)
    return run


def _crash_record(run: Run, exc: BaseException) -> dict[str, Any]:
    """One attempt's error, redacted (a database error quotes the value it refused)."""
    try:
        message = redact(error_text(exc))
    except Exception:  # noqa: BLE001 - redaction may be what crashed: the class alone then
        message = ""
    return {
        "attempt": run.starts,
        "error_class": type(exc).__name__,
        "error_message": message,
        "at": timezone.now().isoformat(),
    }


def _dead_letter_packet(
    *, run: Run, crashes: list[dict[str, Any]], error_class: str, error_message: str
) -> dict[str, Any]:
    return {
        "reason": Escalation.Reason.DEAD_LETTER.label,
        "error_class": error_class,
        "error_message": error_message,
        "attempts": run.starts,
        "max_attempts": max_attempts(),
        "errors": crashes,
    }


def run_dead_letter(
    *,
    run: Run,
    crashes: list[dict[str, Any]],
    error_class: str,
    error_message: str,
    lease: str | None,
) -> bool:
    """End a run that cannot finish as an escalation with its errors (a dead letter),
    writing as little as possible: no trace, no payload, nothing a crash may have come
    from. With ``lease``, only while that lease still holds the run. Returns whether
    it was written (False: another writer ended or took the run meanwhile)."""
    item = run.work_item
    workflow = item.workflow
    dead = _dead_letter_packet(
        run=run, crashes=crashes, error_class=error_class, error_message=error_message
    )
    detail = ERR_DEAD_LETTER.format(
        attempts=run.starts,
        max_attempts=max_attempts(),
        error_class=error_class,
        error_message=error_message,
    )
    packet: dict[str, Any] = {
        "work_item": {"id": item.pk, "external_id": item.external_id, "title": item.title},
        "stop_reason": Run.StopReason.CRASHED,
        "detail": detail,
        "dead_letter": dead,
    }
    try:
        packet, detail = redact(json_safe(packet)), redact(json_safe(detail))
    except Exception:  # the last resort must not fail on what redaction failed on
        logger.exception("dead letter of run %s: redaction failed; error text left out", run.pk)
        dead = {**dead, "error_message": "", "errors": [{"error_class": error_class}]}
        detail = ERR_DEAD_LETTER.format(
            attempts=run.starts,
            max_attempts=max_attempts(),
            error_class=error_class,
            error_message="(left out: it could not be redacted)",
        )
        packet = json_safe(
            {
                "work_item": {"id": item.pk, "external_id": item.external_id},
                "stop_reason": Run.StopReason.CRASHED,
                "detail": detail,
                "dead_letter": dead,
            }
        )
    with transaction.atomic():
        state = json_safe({**(run.state or {}), "lease": None, "crashes": crashes})
        if not states.run_move(
            run.pk,
            to=Run.Status.ESCALATED,
            lease=lease,
            stop_reason=Run.StopReason.CRASHED,
            finished_at=timezone.now(),
            state=state,
        ):
            return False
        escalation = Escalation.objects.create(
            workflow=workflow,
            work_item=item,
            run=run,
            reason=Escalation.Reason.DEAD_LETTER,
            detail=detail[:5000],
            packet=packet,
        )
        notify_escalation(escalation)
        states.work_item_move(item.pk, to=WorkItem.Status.ESCALATED)
        audit_append(
            action="agent.run.dead_lettered",
            actor=principal_for(workflow),
            workflow=workflow,
            obj=run,
            data={
                "work_item": item.external_id,
                "escalation": escalation.pk,
                "error_class": error_class,
                "attempts": run.starts,
            },
        )
    run.status, run.stop_reason = Run.Status.ESCALATED, Run.StopReason.CRASHED
    return True


def run_crashed(*, run: Run, exc: BaseException, runner: Runner | None) -> Run:
    """What a crash leaves: the run released for another attempt (its status stays
    RUNNING, with no lease and no start time, so the next claim takes it at once), or,
    on its last attempt, a dead letter. The error is recorded on the run either way."""
    lease = (run.state or {}).get("lease")
    crash = _crash_record(run, exc)
    crashes = [*(run.state or {}).get("crashes", []), crash]
    if run.starts < max_attempts():
        state = json_safe({"lease": None, "crashes": crashes})
        # What this attempt spent so far is written with the release (the next
        # attempt adds to it).
        spend = {
            name: getattr(run, name)
            for name in ("tokens_in", "tokens_cached", "tokens_out", "cost_usd", "unpriced")
        }
        if states.run_move(
            run.pk, to=Run.Status.RUNNING, lease=lease, started_at=None, state=state, **spend
        ):
            run.state, run.started_at = state, None
            run.retry_in = crash_retry_in(run.starts)  # read by the task
            return run
        return Run.objects.get(pk=run.pk)
    dead = _dead_letter_packet(
        run=run,
        crashes=crashes,
        error_class=crash["error_class"],
        error_message=crash["error_message"],
    )
    if runner is not None:
        # The full escalation first: the trace so far and what was proposed help the
        # person who picks it up; it holds nothing that failed to store (json_safe).
        try:
            runner.run.state = {**runner.run.state, "crashes": crashes}
            runner.step(
                Step.Kind.NOTE, "crash", error=f"{crash['error_class']}: {crash['error_message']}"
            )
            return runner.escalate(
                RunStopped(
                    Run.StopReason.CRASHED,
                    Escalation.Reason.DEAD_LETTER,
                    ERR_DEAD_LETTER.format(
                        attempts=run.starts,
                        max_attempts=max_attempts(),
                        error_class=crash["error_class"],
                        error_message=crash["error_message"],
                    ),
                    extra={"dead_letter": dead},
                )
            )
        except Exception:  # the crash handler falls back to the smallest record
            logger.exception("run %s: the full escalation failed; writing the dead letter", run.pk)
    try:
        run_dead_letter(
            run=run,
            crashes=crashes,
            error_class=crash["error_class"],
            error_message=crash["error_message"],
            lease=lease,
        )
    except Exception:  # the next claim ends it (its starts are used up)
        logger.exception("run %s: the dead letter failed; the next claim writes it", run.pk)
    return Run.objects.get(pk=run.pk)


def run_work_item(*, work_item_id: int, client: ModelClient | None = None) -> Run | None:
    """Run the agent on one work item to proposals or an escalation. A run that
    crashes is left for another attempt (``run.retry_in`` says when; the task and the
    sweeper send it) or, on its last attempt, ends as a dead letter.

    Before the claim, a slot among the workflow's runs in flight and the first model
    request are taken (agents.throttle); when either is not to be had the item is
    left untouched and ``RunDeferred`` says when to try again."""
    found = agents_sql.item_workflow_limits(work_item_id)
    if found is None:
        return None
    workflow_id, max_seconds = found
    slot = throttle.workflow_slot_acquire(
        workflow_id=workflow_id, lease_seconds=max_seconds + STALE_GRACE_SECONDS
    )
    try:
        wait = throttle.model_request_wait()
        if wait > 0:
            raise throttle.RunDeferred(wait, "the model endpoint's rate limit is reached")
        return _run_claimed(work_item_id=work_item_id, client=client)
    finally:
        throttle.workflow_slot_release(slot)


def _run_claimed(*, work_item_id: int, client: ModelClient | None) -> Run | None:
    run = run_claim(work_item_id=work_item_id)
    if run is None:
        return None
    runner: Runner | None = None
    try:
        runner = Runner(run, client=client)
        runner.request_prepaid = True
        return runner.execute()
    except Exception as exc:
        logger.exception("run %s crashed", run.pk)
        return run_crashed(run=run, exc=exc, runner=runner)
