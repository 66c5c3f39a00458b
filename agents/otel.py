"""Export a finished run's trace as OpenTelemetry spans (OTLP/HTTP), off by default.

Set ``TENURE_OTEL_ENDPOINT`` (an OTLP/HTTP collector, e.g.
``http://otel-collector:4318``) and each finished run is sent, after it
commits, as one trace: an ``invoke_agent`` root span for the Run and a child
span per Step, following the OpenTelemetry GenAI semantic conventions
(``gen_ai.*``: ``gen_ai.provider.name``, ``gen_ai.response.finish_reasons``,
``gen_ai.tool.call.id``, ...) plus ``tenure.*`` attributes.

Live tracing (``agents.tracing``) sends the same spans, with the same ids, as each
step ends, plus the run's executions and human decisions; this module rebuilds a
finished run's spans from its rows to export it again.

The spans are built from the RECORDED rows, not from live instrumentation, so a
trace can be exported (or exported again) at any time after the run, and
carries only what the trace stores: Step inputs and outputs are redacted, and
their content is not exported at all, only names, models, tokens, costs,
latencies and errors. Trace and span ids derive from the run, so exporting a
run twice sends the same ids rather than a second trace.

Steps are written in bulk, so a Step has no start time of its own: each span
starts where the previous one ended (from the run's ``started_at``) and lasts
the step's recorded ``latency_ms``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery import shared_task
from django.conf import settings
from django.db import transaction

from agents.models import Run, Step
from agents.redaction import redact

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "tenure"
TRACES_PATH = "/v1/traces"
EXPORT_TIMEOUT_SECONDS = 10
EXPORT_MAX_RETRIES = 5
INSTRUMENTATION_SCOPE = "tenure.agents"
DEMO_SYSTEM = "tenure.demo"
OPENAI_SYSTEM = "openai"
# Runs that have not ended have no trace to send yet.
UNFINISHED = (Run.Status.QUEUED, Run.Status.RUNNING)

ERR_EXPORT_FAILED = "The OTLP exporter refused the trace of run {run_id} ({count} spans)."


class TraceExportFailed(Exception):
    """The collector did not take the trace; the task retries with backoff."""


# --- configuration --------------------------------------------------------------


def otel_endpoint() -> str:
    return str(getattr(settings, "TENURE_OTEL_ENDPOINT", "") or "").strip()


def otel_enabled() -> bool:
    return bool(otel_endpoint())


def traces_url(endpoint: str) -> str:
    """The collector's base URL (``http://collector:4318``) -> its traces URL."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def default_exporter() -> SpanExporter:
    # Headers (an API key for a hosted backend) come from the standard
    # OTEL_EXPORTER_OTLP_HEADERS / OTEL_EXPORTER_OTLP_TRACES_HEADERS variables.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=traces_url(otel_endpoint()), timeout=EXPORT_TIMEOUT_SECONDS)


# --- ids ----------------------------------------------------------------------------


def _id(*parts: object, bits: int) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    value = int.from_bytes(digest[: bits // 8], "big")
    return value or 1  # all-zero ids are invalid in OTLP


def run_trace_id(run: Run) -> int:
    """Stable per run (and per attempt's creation), so a re-export merges, never duplicates."""
    return _id("tenure-run", run.pk, run.created_at.isoformat(), bits=128)


def _span_id(run: Run, index: int) -> int:
    return _id("tenure-span", run.pk, run.created_at.isoformat(), index, bits=64)


class _RunIds:
    """An IdGenerator that hands out the run's ids in the order spans are started."""

    def __init__(self, run: Run, step_indexes: Sequence[int]) -> None:
        self.trace_id = run_trace_id(run)
        self.span_ids: Iterator[int] = iter(
            [_span_id(run, 0), *(_span_id(run, i) for i in step_indexes)]
        )

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return next(self.span_ids)

    def is_trace_id_random(self) -> bool:
        return False


# --- attributes -------------------------------------------------------------------


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(moment: datetime) -> int:
    # Integer arithmetic: a float timestamp would lose the microseconds.
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def gen_ai_system(model: str) -> str:
    """The provider as the GenAI conventions name it (``gen_ai.provider.name``): the demo
    model is labelled as such."""
    return DEMO_SYSTEM if model.startswith("demo-") else OPENAI_SYSTEM


def finish_reasons(step: Step) -> list[str]:
    """Why the model stopped (``gen_ai.response.finish_reasons``): as the endpoint said,
    else read from what it answered (older rows, the demo model)."""
    output = step.output if isinstance(step.output, dict) else {}
    said = output.get("finish_reason")
    if said:
        return [str(said)]
    if step.error:
        return ["error"]
    if output.get("tool_calls"):
        return ["tool_calls"]
    if output.get("refusal"):
        return ["content_filter"]
    return ["stop"]


def run_attributes(run: Run) -> dict[str, Any]:
    workflow = run.work_item.workflow
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": workflow.slug,
        "gen_ai.agent.id": f"tenure:{workflow.slug}",
        "gen_ai.usage.input_tokens": run.tokens_in,
        "gen_ai.usage.output_tokens": run.tokens_out,
        "tenure.workflow": workflow.slug,
        "tenure.run.id": run.pk,
        "tenure.run.attempt": run.attempt,
        "tenure.run.status": run.status,
        "tenure.work_item.id": run.work_item_id,
        "tenure.stop_reason": run.stop_reason,
        "tenure.autonomy_level": run.autonomy_level,
        "tenure.agent_version": run.agent_version,
        "tenure.prompt_version": run.prompt_version,
        "tenure.cost_usd": float(run.cost_usd),
        "tenure.unpriced": run.unpriced,
        "tenure.tokens_cached": run.tokens_cached,
        "tenure.tool_cost_usd": float(run.tool_cost_usd),
        "tenure.tool_calls": run.tool_calls,
        "tenure.retries": run.retries,
        "tenure.wall_ms": run.wall_ms,
    }
    if run.model:
        attributes["gen_ai.request.model"] = run.model
        attributes["gen_ai.provider.name"] = gen_ai_system(run.model)
    return attributes


def step_span(step: Step) -> tuple[str, dict[str, Any]]:
    """A Step's span name and attributes."""
    attributes: dict[str, Any] = {
        "tenure.step.index": step.index,
        "tenure.step.kind": step.kind,
        "tenure.step.cached": step.cached,
        "tenure.step.is_retry": step.is_retry,
        "tenure.cost_usd": float(step.cost_usd),
    }
    if step.kind == Step.Kind.MODEL_CALL:
        model = step.model or step.name
        attributes.update(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": gen_ai_system(model),
                "gen_ai.request.model": model,
                "gen_ai.response.model": model,
                "gen_ai.response.finish_reasons": finish_reasons(step),
                "gen_ai.usage.input_tokens": step.tokens_in,
                "gen_ai.usage.output_tokens": step.tokens_out,
                "tenure.tokens_cached": step.tokens_cached,
                "tenure.unpriced": step.unpriced,
            }
        )
        return f"chat {model}", attributes
    if step.kind in (Step.Kind.TOOL_CALL, Step.Kind.RETRIEVAL):
        attributes.update(
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": step.name,
                "gen_ai.tool.type": "function",
            }
        )
        return f"execute_tool {step.name}", attributes
    return f"tenure.{step.kind} {step.name}", attributes


def _run_failed(run: Run) -> bool:
    return run.status == Run.Status.FAILED or run.stop_reason in (
        Run.StopReason.MODEL_ERROR,
        Run.StopReason.CRASHED,
    )


# --- building and exporting -------------------------------------------------------


def run_spans(run: Run, steps: Sequence[Step]) -> list[ReadableSpan]:
    """Build the run's spans (ended, not yet exported) from its recorded rows."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import SpanKind, Status, StatusCode

    collected: list[ReadableSpan] = []

    class Collect(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            collected.append(span)

    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": getattr(settings, "TENURE_OTEL_SERVICE_NAME", "")
                or DEFAULT_SERVICE_NAME,
            }
        ),
        id_generator=_RunIds(run, [s.index for s in steps]),  # type: ignore[arg-type]
        shutdown_on_exit=False,
    )
    provider.add_span_processor(Collect())
    tracer = provider.get_tracer(INSTRUMENTATION_SCOPE)

    start = run.started_at or run.created_at
    cursor = start
    timings = []
    for step in steps:
        step_start = cursor
        cursor = step_start + timedelta(milliseconds=step.latency_ms)
        timings.append((step, step_start, cursor))
    end = run.finished_at or start + timedelta(milliseconds=run.wall_ms)
    end = max(end, cursor)

    name = f"invoke_agent {run.work_item.workflow.slug}"
    root = tracer.start_span(
        name, kind=SpanKind.INTERNAL, attributes=run_attributes(run), start_time=_ns(start)
    )
    if _run_failed(run):
        root.set_status(Status(StatusCode.ERROR, run.stop_reason or run.status))
    context = trace.set_span_in_context(root)
    for step, step_start, step_end in timings:
        span_name, attributes = step_span(step)
        is_remote = step.kind in (Step.Kind.MODEL_CALL,)
        span = tracer.start_span(
            span_name,
            context=context,
            kind=SpanKind.CLIENT if is_remote else SpanKind.INTERNAL,
            attributes=attributes,
            start_time=_ns(step_start),
        )
        if step.error:
            span.set_attribute("error.type", step.kind)
            span.set_status(Status(StatusCode.ERROR, str(redact(step.error))[:500]))
        span.end(end_time=_ns(step_end))
    root.end(end_time=_ns(end))
    provider.shutdown()
    return collected


def run_export_spans(*, run_id: int, exporter: SpanExporter | None = None) -> int:
    """Export one run's trace; returns the number of spans sent (0 if the run is unfinished).

    With no exporter, the OTLP/HTTP exporter for ``TENURE_OTEL_ENDPOINT`` is used.
    Raises TraceExportFailed when the exporter refuses the batch.
    """
    from opentelemetry.sdk.trace.export import SpanExportResult

    run = Run.objects.select_related("work_item__workflow").get(pk=run_id)
    if run.status in UNFINISHED:
        return 0
    steps = list(run.steps.order_by("index"))
    spans = run_spans(run, steps)
    owned = exporter is None
    exporter = default_exporter() if exporter is None else exporter
    try:
        result = exporter.export(spans)
    finally:
        if owned:
            exporter.shutdown()
    if result is not SpanExportResult.SUCCESS:
        raise TraceExportFailed(ERR_EXPORT_FAILED.format(run_id=run_id, count=len(spans)))
    return len(spans)


@shared_task(
    name="agents.export_run_trace",
    bind=True,
    ignore_result=True,
    max_retries=EXPORT_MAX_RETRIES,
)
def export_run_trace(self: Any, run_id: int) -> int:
    """Send a finished run's trace to the collector. Off (returns 0) with no endpoint."""
    if not otel_enabled():
        return 0
    try:
        return run_export_spans(run_id=run_id)
    except Run.DoesNotExist:
        return 0  # purged by retention before the export ran
    except TraceExportFailed as exc:
        raise self.retry(exc=exc, countdown=min(300, 2 ** (self.request.retries + 2))) from exc


def run_trace_dispatch(*, run: Run) -> None:
    """Queue the run's trace export (rebuilt from its rows) once the current transaction
    commits (if enabled): to export a run again. The runner traces live instead
    (``agents.tracing``)."""
    if not otel_enabled():
        return
    run_id = run.pk

    def send() -> None:
        try:
            export_run_trace.delay(run_id)
        except Exception:  # noqa: BLE001 - tracing is best effort; a broker outage skips it
            logger.warning("broker unavailable: trace of run %s not exported", run_id)

    transaction.on_commit(send)
