"""Live OpenTelemetry spans for the whole action, exported as each one ends.

With ``TENURE_OTEL_ENDPOINT`` set, every process (web, worker) holds one tracer whose
span processor hands each span to the OTLP/HTTP exporter the moment it ends, on a
background thread (``ExportOnEnd``): the caller never waits for the collector, and a
span reaches it while the run is still going, not when the run finishes.

One trace per run (the ids of ``agents.otel``: a run's trace id and its root span id
derive from the run), holding:

* each Step of the run, as it is recorded (``chat``, ``execute_tool``, ...);
* the run's ``invoke_agent`` root, once the run's end commits;
* each human decision on one of its proposals (verdict, reviewer role, time to
  decide), once the decision commits;
* each execution of one of its proposals (idempotency key, result status), once
  recorded.

Spans carry names, ids, counts, costs, statuses and times: never a payload value,
an argument value, a reviewer's name or email, or a tool's output. Error texts are
redacted (``agents.redaction``) before they become a span status.

``agents.otel.run_export_spans`` still rebuilds a finished run's spans from its rows,
to export a run again (or one recorded while tracing was off).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from opentelemetry.sdk.trace import SpanProcessor

from agents.otel import (
    DEFAULT_SERVICE_NAME,
    INSTRUMENTATION_SCOPE,
    _ns,
    _run_failed,
    _span_id,
    default_exporter,
    otel_enabled,
    run_attributes,
    run_trace_id,
    step_span,
)
from agents.redaction import redact

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from agents.models import Execution, Proposal, Run, Step

logger = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000  # spans waiting for the exporter; beyond it, spans are dropped (logged)
BATCH_LIMIT = 512
GATHER_SECONDS = 0.02  # after a span ends, how long the exporter waits for the next ones


class ExportOnEnd(SpanProcessor):
    """A span processor that exports each span as it ends, off the caller's thread.

    ``on_end`` only queues the span; one daemon thread exports it within
    ``GATHER_SECONDS``, with whatever else ended meanwhile (a burst leaves as one
    request). ``force_flush`` waits (bounded) for the queue to empty.
    """

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter
        self.queue: queue.Queue[ReadableSpan | None] = queue.Queue(maxsize=QUEUE_LIMIT)
        self.dropped = 0
        self.thread = threading.Thread(target=self._work, name="tenure-otel", daemon=True)
        self.thread.start()

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        try:
            self.queue.put_nowait(span)
        except queue.Full:
            self.dropped += 1
            logger.warning("otel export queue full: span %s dropped", span.name)

    def _work(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                self.queue.task_done()
                return
            # A short gathering window: a burst (a run's steps) leaves as one request,
            # and the caller is not handed the interpreter back and forth per span.
            time.sleep(GATHER_SECONDS)
            batch = [first]
            while len(batch) < BATCH_LIMIT:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.queue.task_done()
                    self.queue.put(None)  # seen again after this batch: stop then
                    break
                batch.append(nxt)
            try:
                self.exporter.export(batch)
            except Exception:  # tracing never breaks the process
                logger.warning("otel export of %d spans failed", len(batch), exc_info=True)
            finally:
                for _ in batch:
                    self.queue.task_done()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait (bounded) until every span queued so far has been exported."""
        deadline = time.monotonic() + timeout_millis / 1000
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.queue.unfinished_tasks

    def shutdown(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)
        self.exporter.shutdown()


_lock = threading.Lock()
_state: dict[str, Any] = {}


def provider() -> TracerProvider | None:
    """This process's tracer provider (created on first use, so after any fork, and
    again if the endpoint changes), or None when tracing is off."""
    if not otel_enabled():
        return None
    from agents.otel import otel_endpoint

    endpoint = otel_endpoint()
    current = _state.get("provider")
    if current is not None and _state.get("endpoint") == endpoint:
        return current  # the usual case, without the lock
    with _lock:
        current = _state.get("provider")
        if current is not None and _state.get("endpoint") == endpoint:
            return current
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        if current is not None:
            current.shutdown()
        created = TracerProvider(
            resource=Resource.create(
                {
                    "service.name": getattr(settings, "TENURE_OTEL_SERVICE_NAME", "")
                    or DEFAULT_SERVICE_NAME
                }
            ),
            id_generator=_FixedIds(),  # type: ignore[arg-type]
            shutdown_on_exit=True,
        )
        created.add_span_processor(ExportOnEnd(default_exporter()))  # type: ignore[arg-type]
        _state.update(provider=created, endpoint=endpoint)
        return created


def reset() -> None:
    """Flush and drop this process's provider (tests; a changed endpoint)."""
    with _lock:
        current = _state.pop("provider", None)
        _state.pop("endpoint", None)
    if current is not None:
        current.shutdown()


def flush() -> None:
    current = _state.get("provider")
    if current is not None:
        current.force_flush()


def _tracer() -> Tracer | None:
    current = provider()
    if current is None:
        return None
    tracer = _state.get("tracer")
    if tracer is None or _state.get("tracer_of") is not current:
        tracer = current.get_tracer(INSTRUMENTATION_SCOPE)
        _state.update(tracer=tracer, tracer_of=current)
    return tracer


class _FixedIds:
    """Hands the next span started on this thread the ids it must have (the run's
    root, a step: the ids the rows' re-export gives them too); random otherwise."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        self.local = threading.local()
        self.random = RandomIdGenerator()

    def generate_trace_id(self) -> int:
        value = getattr(self.local, "trace_id", None)
        self.local.trace_id = None
        return value or self.random.generate_trace_id()

    def generate_span_id(self) -> int:
        value = getattr(self.local, "span_id", None)
        self.local.span_id = None
        return value or self.random.generate_span_id()

    def is_trace_id_random(self) -> bool:
        return False


def _run_context(run: Run) -> Any:
    """A context whose parent is the run's root span (ended or not, here or elsewhere)."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    parent = SpanContext(
        trace_id=run_trace_id(run),
        span_id=_span_id(run, 0),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


@contextmanager
def _ids_next(*, span_id: int, trace_id: int | None = None) -> Iterator[None]:
    """Give the next span started on this thread chosen ids (deterministic per run)."""
    current = provider()
    generator = current.id_generator if current is not None else None
    if not isinstance(generator, _FixedIds):
        yield
        return
    generator.local.span_id, generator.local.trace_id = span_id, trace_id
    try:
        yield
    finally:
        generator.local.span_id = generator.local.trace_id = None


def _error(text: str) -> str:
    return str(redact(text))[:500]


# --- What is traced ------------------------------------------------------------------------


def step_emit(*, run: Run, step: Step, tool_call_id: str = "") -> None:
    """A step of a run, as it is recorded: it ends now and lasted its latency. Never
    raises: tracing does not stop a run."""
    try:
        _step_emit(run=run, step=step, tool_call_id=tool_call_id)
    except Exception:  # tracing is best effort
        logger.warning("otel: step %s of run %s not traced", step.index, run.pk, exc_info=True)


def _step_emit(*, run: Run, step: Step, tool_call_id: str) -> None:
    tracer = _tracer()
    if tracer is None:
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    name, attributes = step_span(step)
    if tool_call_id:
        attributes["gen_ai.tool.call.id"] = tool_call_id
    end = timezone.now()
    start = end - timedelta(milliseconds=step.latency_ms)
    with _ids_next(span_id=_span_id(run, step.index)):
        span = tracer.start_span(
            name,
            context=_run_context(run),
            kind=SpanKind.CLIENT if step.kind == "model_call" else SpanKind.INTERNAL,
            attributes=attributes,
            start_time=_ns(start),
        )
    if step.error:
        span.set_attribute("error.type", step.kind)
        span.set_status(Status(StatusCode.ERROR, _error(step.error)))
    span.end(end_time=_ns(end))


def run_root_emit(*, run: Run) -> None:
    """The run's ``invoke_agent`` root span, at its end (its steps went out already)."""
    tracer = _tracer()
    if tracer is None:
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    start = run.started_at or run.created_at
    end = max(run.finished_at or timezone.now(), start)
    from opentelemetry.context import Context

    # The root has no parent: it takes the run's trace id and its own span id.
    with _ids_next(span_id=_span_id(run, 0), trace_id=run_trace_id(run)):
        root = tracer.start_span(
            f"invoke_agent {run.work_item.workflow.slug}",
            context=Context(),
            kind=SpanKind.INTERNAL,
            attributes=run_attributes(run),
            start_time=_ns(start),
        )
    if _run_failed(run):
        root.set_status(Status(StatusCode.ERROR, run.stop_reason or run.status))
    root.end(end_time=_ns(end))


def run_root_dispatch(*, run: Run) -> None:
    """End the run's root span once the current transaction commits (if tracing is on)."""
    if not otel_enabled():
        return

    def emit() -> None:
        try:
            run_root_emit(run=run)
        except Exception:  # tracing is best effort
            logger.warning("otel: root span of run %s not emitted", run.pk, exc_info=True)

    transaction.on_commit(emit)


def _run_of(proposal: Proposal) -> Run:
    from agents.models import Run

    return Run.objects.only("pk", "created_at").get(pk=proposal.run_id)


def execution_emit(*, execution: Execution, proposal: Proposal) -> None:
    """One execution of a proposal, the real side effect: its key and its result."""
    tracer = _tracer()
    if tracer is None:
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    start = execution.started_at or execution.created_at or timezone.now()
    end = execution.finished_at or timezone.now()
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": proposal.tool,
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": proposal_call_id(proposal),
        "tenure.workflow": proposal.workflow.slug,
        "tenure.proposal.id": proposal.pk,
        "tenure.run.id": proposal.run_id,
        "tenure.execution.id": execution.pk,
        "tenure.execution.idempotency_key": execution.idempotency_key,
        "tenure.execution.status": execution.status,
        "tenure.execution.auto": execution.auto,
        "tenure.execution.attempts": execution.attempts,
        "tenure.arguments_hash": execution.arguments_hash,
    }
    span = tracer.start_span(
        f"execute_tool {proposal.tool}",
        context=_run_context(_run_of(proposal)),
        kind=SpanKind.CLIENT,
        attributes=attributes,
        start_time=_ns(min(start, end)),
    )
    if execution.status == "failed":
        span.set_attribute("error.type", "tool_error")
        span.set_status(Status(StatusCode.ERROR, _error(execution.error)))
    span.end(end_time=_ns(end))


def execution_dispatch(*, execution: Execution, proposal: Proposal) -> None:
    if not otel_enabled():
        return

    def emit() -> None:
        try:
            execution_emit(execution=execution, proposal=proposal)
        except Exception:  # tracing is best effort
            logger.warning("otel: execution %s not traced", execution.pk, exc_info=True)

    transaction.on_commit(emit)


def proposal_call_id(proposal: Proposal) -> str:
    return f"tenure-proposal-{proposal.pk}"


def decision_emit(
    *,
    proposal: Proposal,
    verdict: str,
    kind: str,
    roles: list[str],
    seconds_spent: int,
    decided_at: datetime,
    via: str = "",
    approvals: int = 0,
    needed: int = 0,
) -> None:
    """A human's decision on a proposal: the verdict, the reviewer's role (never who),
    the time the proposal waited and the time the reviewer spent on it."""
    tracer = _tracer()
    if tracer is None:
        return
    attributes: dict[str, Any] = {
        "gen_ai.tool.name": proposal.tool,
        "gen_ai.tool.call.id": proposal_call_id(proposal),
        "tenure.workflow": proposal.workflow.slug,
        "tenure.proposal.id": proposal.pk,
        "tenure.run.id": proposal.run_id,
        "tenure.decision.verdict": verdict,
        "tenure.decision.kind": kind,
        "tenure.reviewer.role": ",".join(sorted(roles)) or "none",
        "tenure.decision.seconds_spent": seconds_spent,
        "tenure.decision.time_to_decide_s": max(
            0.0, (decided_at - proposal.created_at).total_seconds()
        ),
        "tenure.autonomy_level": proposal.autonomy_level,
    }
    if via:
        attributes["tenure.decision.via"] = via
    if needed:
        attributes["tenure.decision.approvals"] = approvals
        attributes["tenure.decision.approvals_needed"] = needed
    start = decided_at - timedelta(seconds=seconds_spent)
    span = tracer.start_span(
        f"tenure.decision {proposal.tool}",
        context=_run_context(_run_of(proposal)),
        attributes=attributes,
        start_time=_ns(start),
    )
    span.end(end_time=_ns(decided_at))


def decision_dispatch(*, reviewer: Any, **fields: Any) -> None:
    """Trace the decision once it commits (a refused one rolls back and is not traced).
    The span names the reviewer's roles, never the reviewer."""
    if not otel_enabled():
        return

    def emit() -> None:
        from governance.permissions import user_roles

        try:
            decision_emit(roles=sorted(user_roles(reviewer)), **fields)
        except Exception:  # tracing is best effort
            logger.warning("otel: decision not traced", exc_info=True)

    transaction.on_commit(emit)
