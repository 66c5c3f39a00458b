"""Replaying the agent on a case: agent versions, recorded read outputs, and a
run inside a savepoint that is always rolled back (nothing survives, nothing
executes)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from agents import prompts
from agents.llm import ModelClient
from agents.models import (
    Escalation,
    Proposal,
    Run,
    Step,
    WorkItem,
)
from agents.redaction import KINDS as PII_KINDS
from agents.redaction import redact
from agents.runner import Runner
from agents.tools import BUILTIN_TOOLS, Tool, ToolContext, ToolError, canonical_json, registry_for
from governance import privacy
from governance.models import Workflow

logger = logging.getLogger(__name__)

CURRENT_VERSION = prompts.AGENT_VERSION

ERR_NOT_RECORDED = (
    "{tool} was not called with these arguments when this case was recorded; "
    "no live call is made during an eval."
)
ERR_UNKNOWN_AGENT_VERSION = "“{version}” is not an agent version this console can replay: {known}."
ERR_REPLAY_CRASHED = "The replay crashed: {error}"

_PLACEHOLDER_RE = re.compile(r"\[(?:" + "|".join(re.escape(k) for k in PII_KINDS) + r")\]")


@dataclass(frozen=True)
class AgentVariant:
    """An agent version the suite can replay: the current one, or a named variant
    with its own model client (and, if it says so, its own models). A replay never
    reads or writes the model request cache, so no version is handed another's
    answers, nor the same version its answers from before the model changed."""

    version: str
    client: ModelClient | None = None
    small: str = ""
    large: str = ""
    prompt_version: str = prompts.PROMPT_VERSION


# Named variants (version -> a function returning the AgentVariant), registered at
# start-up by the apps that ship them (the demo registers "demo-regressed").
AGENT_VARIANTS: dict[str, Callable[[], AgentVariant]] = {}


def agent_variant_register(version: str, factory: Callable[[], AgentVariant]) -> None:
    AGENT_VARIANTS[version] = factory


def agent_variant(version: str | None = None) -> AgentVariant:
    if not version or version == CURRENT_VERSION:
        return AgentVariant(version=CURRENT_VERSION)
    if version not in AGENT_VARIANTS:
        known = ", ".join([CURRENT_VERSION, *AGENT_VARIANTS])
        raise ValidationError(
            ERR_UNKNOWN_AGENT_VERSION.format(version=version, known=known), code="agent_version"
        )
    return AGENT_VARIANTS[version]()


# --- Recordings ----------------------------------------------------------------------


def _has_placeholder(value: Any) -> bool:
    return bool(_PLACEHOLDER_RE.search(canonical_json(value)))


def _recording_key(tool: str, arguments: Any) -> str:
    return canonical_json([tool, redact(json.loads(canonical_json(arguments)))])


class Recording:
    """{tool + canonical arguments -> output}, matched exactly first, then on the
    redacted form (the trace a recording comes from is redacted)."""

    def __init__(self, entries: Iterable[dict[str, Any]]) -> None:
        self.exact: dict[str, Any] = {}
        self.redacted: dict[str, Any] = {}
        for entry in entries:
            tool, arguments = entry.get("tool", ""), entry.get("arguments") or {}
            self.exact.setdefault(canonical_json([tool, arguments]), entry.get("output"))
            self.redacted.setdefault(_recording_key(tool, arguments), entry.get("output"))

    def lookup(self, tool: str, arguments: dict[str, Any]) -> Any | None:
        exact = self.exact.get(canonical_json([tool, arguments]))
        if exact is not None:
            return exact
        return self.redacted.get(_recording_key(tool, arguments))


def _fill(recorded: Any, live: Any) -> Any:
    """Recorded values, with each redacted leaf replaced by the live value at the same
    place when that value redacts to the same text."""
    if isinstance(recorded, str):
        if isinstance(live, str) and _PLACEHOLDER_RE.search(recorded) and redact(live) == recorded:
            return live
        return recorded
    if isinstance(recorded, dict) and isinstance(live, dict):
        return {k: _fill(v, live[k]) if k in live else v for k, v in recorded.items()}
    if isinstance(recorded, list) and isinstance(live, list):
        return [_fill(v, live[i]) if i < len(live) else v for i, v in enumerate(recorded)]
    return recorded


def _tool(workflow: Workflow, name: str, registry: dict[str, Tool] | None = None) -> Tool | None:
    registry = registry if registry is not None else registry_for(workflow)
    return registry.get(name) or BUILTIN_TOOLS.get(name)


def _rehydrate(workflow: Workflow, entry: dict[str, Any], registry: dict[str, Tool]) -> dict:
    if not _has_placeholder(entry["output"]) or _has_placeholder(entry["arguments"]):
        return entry
    tool = _tool(workflow, entry["tool"], registry)
    if tool is None or not tool.is_read:
        return entry
    try:
        args = tool.validate(entry["arguments"])
        live = tool.run(ToolContext(workflow=workflow, principal="evals:capture"), args)
    except (PydanticValidationError, ToolError, ValueError) as exc:
        logger.info("could not rehydrate %s: %s", entry["tool"], exc)
        return entry
    return {**entry, "output": _fill(entry["output"], json.loads(canonical_json(live)))}


def recording_from_run(run: Run | None) -> list[dict[str, Any]]:
    """The read-tool calls of a run's trace that succeeded, in order, deduplicated."""
    if run is None:
        return []
    workflow = run.work_item.workflow
    registry = registry_for(workflow)
    entries: dict[str, dict[str, Any]] = {}
    steps = run.steps.filter(kind__in=(Step.Kind.TOOL_CALL, Step.Kind.RETRIEVAL), error="")
    for step in steps.order_by("index"):
        tool = _tool(workflow, step.name, registry)
        if tool is not None and not tool.is_read:
            continue
        entry = {"tool": step.name, "arguments": step.input or {}, "output": step.output}
        entries.setdefault(canonical_json([step.name, entry["arguments"]]), entry)
    # A rehydrated output holds live values again: a person's known values go back to
    # their tokens before the recording is stored (governance.privacy).
    vault = privacy.vault_for(run.work_item.payload)
    return [vault.protect(_rehydrate(workflow, e, registry)) for e in entries.values()]


# --- The replay ------------------------------------------------------------------------


class EvalRunner(Runner):
    """The real runner, with read tools answered from a recording.

    The kill switch is not consulted: a replay changes nothing anywhere, and a
    paused workflow is exactly when its owners need to run the suite.

    Every model call goes to the model: a suite asks how the agent answers now, and
    the request cache would replay how it answered up to an hour ago (it is keyed
    by model and prompt, not by what changed behind the model's name).
    """

    use_model_cache = False

    def __init__(
        self, run: Run, *, recording: Recording | None, variant: AgentVariant, **kwargs: Any
    ) -> None:
        super().__init__(run, client=variant.client, **kwargs)
        self.small = variant.small or self.small
        self.large_model = variant.large or self.large_model
        self.recording = recording
        self.reads: list[dict[str, Any]] = []

    def ensure_running(self) -> None:
        return None

    def run_read_tool(self, tool: Tool, args: BaseModel, clean: dict[str, Any]) -> dict[str, Any]:
        if self.recording is None:  # capture: live reads, recorded as they happen
            output = super().run_read_tool(tool, args, clean)
            self.reads.append({"tool": tool.name, "arguments": clean, "output": output})
            return output
        output = self.recording.lookup(tool.name, clean)
        error = ""
        if output is None:
            error = ERR_NOT_RECORDED.format(tool=tool.name)
            output = {"error": error, "not_recorded": True}
        self.reads.append({"tool": tool.name, "arguments": clean, "recorded": not error})
        self.step(
            Step.Kind.RETRIEVAL if tool.name == "search_knowledge" else Step.Kind.TOOL_CALL,
            tool.name, input=clean, output=output, error=error,
        )  # fmt: skip
        if tool.name == "search_knowledge" and isinstance(output, dict):
            for result in output.get("results", []):
                if result.get("slug") and result["slug"] not in self.state.citations:
                    self.state.citations.append(result["slug"])
        self.state.tool_outputs.append({"tool": tool.name, "arguments": clean, "output": output})
        self.scan_tool_output(tool, output)
        return output


class _Rollback(Exception):  # control flow, never escapes this module
    pass


@dataclass
class Replay:
    outcome: str  # "proposed" | "escalated" | "error"
    actions: list[dict[str, Any]] = field(default_factory=list)
    escalation: dict[str, Any] = field(default_factory=dict)
    reads: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "actions": self.actions,
            "escalation": self.escalation,
            "reads": self.reads,
            "model": self.model,
            "error": self.error,
        }


def agent_replay(
    *,
    workflow: Workflow,
    external_id: str,
    title: str,
    payload: dict[str, Any],
    variant: AgentVariant,
    recording: Recording | None,
) -> Replay:
    """Run the agent on a snapshot of a work item and roll everything back.

    With ``recording=None`` read tools run live (used to capture a new case)."""
    replay = Replay(outcome="error")
    try:
        with transaction.atomic():
            item = WorkItem.objects.create(
                workflow=workflow,
                external_id=f"eval:{uuid.uuid4().hex}",
                title=title[:300],
                payload=payload,
                source=WorkItem.Source.COMMAND,
                status=WorkItem.Status.RUNNING,
            )
            # The prompt shows the original id (a model may key on it); the row keeps
            # a unique one, and the whole savepoint is rolled back anyway.
            item.external_id = external_id
            run = Run.objects.create(
                work_item=item,
                status=Run.Status.RUNNING,
                autonomy_level=workflow.autonomy_level,
                agent_version=variant.version,
                prompt_version=variant.prompt_version,
                started_at=timezone.now(),
                state={"lease": uuid.uuid4().hex},
            )
            runner = EvalRunner(run, recording=recording, variant=variant)
            try:
                runner.execute()
            except Exception as exc:
                logger.exception("eval replay of %s crashed", external_id)
                replay.error = ERR_REPLAY_CRASHED.format(error=f"{type(exc).__name__}: {exc}")
                raise _Rollback from exc
            replay.reads, replay.model = runner.reads, runner.run.model
            proposals = Proposal.objects.filter(run=run).order_by("sequence")
            replay.actions = [
                {"tool": p.tool, "arguments": privacy.reveal(p.arguments), "verdict": p.verdict}
                for p in proposals
            ]
            escalation = Escalation.objects.filter(run=run).first()
            if escalation is not None:
                replay.escalation = {"reason": escalation.reason, "detail": escalation.detail}
            replay.outcome = "proposed" if replay.actions else "escalated"
            raise _Rollback
    except _Rollback:
        pass
    return replay
