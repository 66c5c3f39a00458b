"""Tenure's gate for outside agents, from Python.

Every tool call an agent wants to make goes to Tenure first; Tenure answers by the
tool's autonomy level:

* ``recorded``: shadow mode. Nothing ran; a reviewer records what a human really did.
* ``pending``: a reviewer approves first (supervised, or above the caps at limited).
* ``executed``: Tenure ran the tool through its connector; ``result`` is its output.
* ``denied``: policy refuses it; ``rule`` says why.

A retry with the same idempotency key returns the same answer and never acts
twice, so the client retries network errors and 5xx on its own.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "EXECUTED",
    "PENDING",
    "RECORDED",
    "GateAnswer",
    "GateDenied",
    "GateError",
    "GateNotExecuted",
    "GatePending",
    "GateRefused",
    "TenureClient",
    "call_key",
    "gate",
]

RECORDED, PENDING, EXECUTED, DENIED = "recorded", "pending", "executed", "denied"
MAX_WAIT = 30.0


class GateError(Exception):
    """The gate refused the request itself (bad tool, bad arguments, auth): ``status``,
    ``code`` and ``message`` come from Tenure's error body."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details


class GateRefused(GateError):
    """The workflow is paused (kill switch) or off: nothing was recorded or run."""


@dataclass(frozen=True)
class GateAnswer:
    status: str
    id: int
    tool: str
    raw: dict[str, Any] = field(repr=False)

    @property
    def executed(self) -> bool:
        return self.status == EXECUTED

    @property
    def result(self) -> Any:
        return self.raw.get("result")

    @property
    def rule(self) -> str:
        return self.raw.get("rule") or ""

    def as_tool_output(self) -> dict[str, Any]:
        """What to hand back to a model: the result when executed, else what happened."""
        if self.executed:
            return {"status": EXECUTED, "result": self.result}
        notes = {
            RECORDED: "Recorded by Tenure for human review; not executed (shadow mode).",
            PENDING: "Waiting for a human approval in Tenure; not executed yet.",
            DENIED: "Denied by Tenure's policy; not executed.",
        }
        return {
            "status": self.status,
            "executed": False,
            "note": notes.get(self.status, "Not executed."),
            "rule": self.rule,
            "gate_call_id": self.id,
        }


class GateNotExecuted(Exception):
    """Raised by a wrapped tool whose call did not execute; ``answer`` says why."""

    def __init__(self, answer: GateAnswer) -> None:
        super().__init__(f"{answer.tool}: {answer.status}. {answer.rule}".strip())
        self.answer = answer


class GatePending(GateNotExecuted):
    pass


class GateDenied(GateNotExecuted):
    pass


def call_key(agent_run_id: str, step_id: str, tool: str, arguments: dict[str, Any]) -> str:
    """A stable idempotency key for one step's call: the same call retried (or
    replayed after a resume) gets the same key."""
    body = json.dumps([agent_run_id, step_id, tool, arguments], sort_keys=True, default=str)
    return "tc-" + hashlib.sha256(body.encode()).hexdigest()[:40]


class TenureClient:
    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        workflow: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("TENURE_URL", "")).rstrip("/")
        self.workflow = workflow or os.environ.get("TENURE_WORKFLOW", "")
        token = token or os.environ.get("TENURE_TOKEN", "")
        self.retries = retries
        self.http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout + MAX_WAIT,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> TenureClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the gate ---------------------------------------------------------------------
    def _send(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                response = self.http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                last = exc
            else:
                if response.status_code < 500:
                    body = response.json()
                    if response.status_code >= 400:
                        error = body.get("error", {})
                        cls = GateRefused if error.get("code") == "workflow_paused" else GateError
                        raise cls(
                            response.status_code,
                            error.get("code", ""),
                            error.get("message", ""),
                            error.get("details"),
                        )
                    return body
                last = GateError(response.status_code, "server_error", response.text[:300])
            time.sleep(min(4.0, 0.25 * 2**attempt))
        raise last if last is not None else GateError(0, "no_attempt", "No request was sent.")

    def gate(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        agent_run_id: str,
        step_id: str = "",
        idempotency_key: str | None = None,
        context: Any = None,
        context_trusted: bool = False,
        callback_url: str = "",
        wait: float = 0.0,
        workflow: str | None = None,
    ) -> GateAnswer:
        """Ask the gate about one call. ``wait``: while pending, long-poll up to that
        many seconds in total for a reviewer's decision."""
        workflow = workflow or self.workflow
        key = idempotency_key or call_key(agent_run_id, step_id, tool, arguments)
        body: dict[str, Any] = {
            "tool": tool,
            "arguments": arguments,
            "agent_run_id": agent_run_id,
            "step_id": step_id,
        }
        if context is not None:
            body["context"] = {"input": context, "trusted": context_trusted}
        if callback_url:
            body["callback_url"] = callback_url
        raw = self._send(
            "POST",
            f"/api/v1/workflows/{workflow}/actions",
            json=body,
            headers={"Idempotency-Key": key},
        )
        answer = _answer(raw)
        if answer.status == PENDING and wait > 0:
            answer = self.poll(answer.id, wait=wait, workflow=workflow)
        return answer

    def poll(self, call_id: int, *, wait: float = 0.0, workflow: str | None = None) -> GateAnswer:
        """The call's answer now; with ``wait``, long-polls (in bounded slices) while pending."""
        workflow = workflow or self.workflow
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            left = max(0.0, min(MAX_WAIT, deadline - time.monotonic()))
            raw = self._send(
                "GET",
                f"/api/v1/workflows/{workflow}/actions/{call_id}",
                params={"wait": f"{left:.2f}"} if left else None,
            )
            answer = _answer(raw)
            if answer.status != PENDING or time.monotonic() >= deadline:
                return answer

    # --- wrapping a tool function ----------------------------------------------------
    def tool(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        agent_run_id: str | Callable[[], str] | None = None,
        wait: float = 0.0,
        raise_unless_executed: bool = True,
    ) -> Any:
        """Decorate a tool function: calling it sends the call (its name and keyword
        arguments) through the gate. Tenure runs the tool (its connector) when the
        level allows; the function's own body never runs. Returns the result when
        executed; otherwise raises ``GatePending`` / ``GateDenied`` /
        ``GateNotExecuted`` (``raise_unless_executed=False`` returns the answer)."""

        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            signature = inspect.signature(fn)
            tool_name = name or fn.__name__
            default_run = f"run-{uuid.uuid4().hex[:12]}"

            @functools.wraps(fn)
            def gated(*args: Any, **kwargs: Any) -> Any:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                run = agent_run_id() if callable(agent_run_id) else agent_run_id
                answer = self.gate(
                    tool_name,
                    dict(bound.arguments),
                    agent_run_id=run or default_run,
                    wait=wait,
                )
                return _outcome(answer, raise_unless_executed=raise_unless_executed)

            gated.tenure_tool = tool_name  # type: ignore[attr-defined]
            return gated

        return wrap(func) if func is not None else wrap


def _answer(raw: dict[str, Any]) -> GateAnswer:
    return GateAnswer(status=raw["status"], id=raw["id"], tool=raw.get("tool", ""), raw=raw)


def _outcome(answer: GateAnswer, *, raise_unless_executed: bool) -> Any:
    if answer.executed:
        return answer.result
    if not raise_unless_executed:
        return answer
    if answer.status == PENDING:
        raise GatePending(answer)
    if answer.status == DENIED:
        raise GateDenied(answer)
    raise GateNotExecuted(answer)


def gate(workflow: str, tool: str, arguments: dict[str, Any], **kwargs: Any) -> GateAnswer:
    """One call through the gate with a client from the environment (``TENURE_URL``,
    ``TENURE_TOKEN``)."""
    with TenureClient(workflow=workflow) as client:
        return client.gate(tool, arguments, **kwargs)
