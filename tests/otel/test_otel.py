"""Run traces as OpenTelemetry spans: built from recorded rows, sent over OTLP/HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agents.models import Run, Step
from agents.otel import (
    ERR_EXPORT_FAILED,
    EXPORT_MAX_RETRIES,
    TraceExportFailed,
    export_run_trace,
    run_export_spans,
    run_trace_dispatch,
    run_trace_id,
    traces_url,
)
from agents.runner import run_work_item
from tests.agents.stub_openai import (  # noqa: F401 - fixtures
    make_item,
    make_refund_workflow,
    stub_openai_fixture,
)
from tests.callbacks import task_callbacks
from tests.factories import RunFactory, WorkflowFactory, WorkItemFactory
from tests.otel.collector import Collector

pytestmark = pytest.mark.django_db

STARTED = datetime(2026, 11, 20, 9, 30, 0, tzinfo=UTC)


@pytest.fixture
def run() -> Run:
    """A finished run with a model call, a tool call that failed, a policy check, a model call."""
    workflow = WorkflowFactory(slug="refunds")
    item = WorkItemFactory(workflow=workflow)
    run = RunFactory(
        work_item=item,
        started_at=STARTED,
        finished_at=STARTED + timedelta(milliseconds=2500),
        wall_ms=2500,
        model="gpt-4o-mini",
        agent_version="agent-7",
        prompt_version="p-3",
        tokens_in=1500,
        tokens_out=200,
        cost_usd=Decimal("0.000345"),
        tool_cost_usd=Decimal("0.010000"),
        tool_calls=1,
        stop_reason=Run.StopReason.COMPLETED,
    )
    steps = [
        Step(run=run, index=1, kind=Step.Kind.MODEL_CALL, name="gpt-4o-mini", model="gpt-4o-mini",
             latency_ms=800, tokens_in=900, tokens_out=120, cost_usd=Decimal("0.000207"),
             input={"last": "[EMAIL]"}, output={"content": ""}),
        Step(run=run, index=2, kind=Step.Kind.TOOL_CALL, name="lookup_order", latency_ms=150,
             error="Tool lookup_order failed: timeout", input={"order_number": "A-1"}),
        Step(run=run, index=3, kind=Step.Kind.POLICY, name="create_refund", latency_ms=0),
        Step(run=run, index=4, kind=Step.Kind.MODEL_CALL, name="gpt-4o-mini", model="gpt-4o-mini",
             latency_ms=600, tokens_in=600, tokens_out=80, cost_usd=Decimal("0.000138"),
             cached=True),
    ]  # fmt: skip
    Step.objects.bulk_create(steps)
    return run


def _by_name(spans) -> dict[str, list]:
    out: dict[str, list] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def test_spans_follow_the_genai_conventions_with_recorded_times(run):
    exporter = InMemorySpanExporter()
    assert run_export_spans(run_id=run.pk, exporter=exporter) == 5
    spans = exporter.get_finished_spans()
    names = _by_name(spans)
    [root] = names["invoke_agent refunds"]
    assert set(names) == {
        "invoke_agent refunds",
        "chat gpt-4o-mini",
        "execute_tool lookup_order",
        "tenure.policy create_refund",
    }
    assert root.parent is None
    assert root.context.trace_id == run_trace_id(run)
    children = [s for s in spans if s is not root]
    assert all(s.parent.span_id == root.context.span_id for s in children)
    assert all(s.context.trace_id == root.context.trace_id for s in children)
    assert len({s.context.span_id for s in spans}) == 5

    attrs = root.attributes
    assert attrs["gen_ai.operation.name"] == "invoke_agent"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert "gen_ai.system" not in attrs
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (1500, 200)
    assert attrs["tenure.workflow"] == "refunds"
    assert attrs["tenure.run.id"] == run.pk
    assert attrs["tenure.stop_reason"] == "completed"
    assert attrs["tenure.cost_usd"] == pytest.approx(0.000345)
    assert attrs["tenure.tool_cost_usd"] == pytest.approx(0.01)
    assert root.start_time == int(STARTED.timestamp()) * 1_000_000_000
    assert root.end_time == int(STARTED.timestamp()) * 1_000_000_000 + 2500 * 1_000_000
    assert root.status.status_code == StatusCode.UNSET

    first, second = names["chat gpt-4o-mini"]
    assert first.kind == SpanKind.CLIENT
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.usage.input_tokens"] == 900
    assert first.attributes["gen_ai.usage.output_tokens"] == 120
    assert first.attributes["tenure.step.index"] == 1
    assert second.attributes["tenure.step.cached"] is True
    [tool] = names["execute_tool lookup_order"]
    assert tool.attributes["gen_ai.tool.name"] == "lookup_order"
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.status.status_code == StatusCode.ERROR
    assert tool.status.description == "Tool lookup_order failed: timeout"

    # Each step starts where the one before ended and lasts its recorded latency.
    ms = 1_000_000
    assert first.start_time == root.start_time
    assert first.end_time - first.start_time == 800 * ms
    assert tool.start_time == first.end_time
    assert tool.end_time - tool.start_time == 150 * ms
    assert second.end_time - second.start_time == 600 * ms
    assert second.end_time <= root.end_time
    # Recorded content (even redacted) is not exported.
    for span in spans:
        assert not any(
            "input" in key or "output" in key for key in span.attributes if "usage" not in key
        )


def test_exporting_a_run_twice_sends_the_same_ids(run):
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    run_export_spans(run_id=run.pk, exporter=first)
    run_export_spans(run_id=run.pk, exporter=second)

    def ids(exporter):
        return sorted(
            (s.context.trace_id, s.context.span_id) for s in exporter.get_finished_spans()
        )

    assert ids(first) == ids(second)


def test_an_unfinished_run_exports_nothing(db):
    run = RunFactory(status=Run.Status.RUNNING, started_at=STARTED)
    exporter = InMemorySpanExporter()
    assert run_export_spans(run_id=run.pk, exporter=exporter) == 0
    assert exporter.get_finished_spans() == ()


def test_a_failed_run_marks_the_root_span_as_an_error(run):
    run.status, run.stop_reason = Run.Status.ESCALATED, Run.StopReason.MODEL_ERROR
    run.save(update_fields=["status", "stop_reason"])
    exporter = InMemorySpanExporter()
    run_export_spans(run_id=run.pk, exporter=exporter)
    [root] = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert root.status.status_code == StatusCode.ERROR
    assert root.attributes["tenure.stop_reason"] == "model_error"


def test_the_demo_model_is_labelled_as_such(db):
    run = RunFactory(model="demo-small", started_at=STARTED, finished_at=STARTED)
    Step.objects.create(
        run=run, index=1, kind=Step.Kind.MODEL_CALL, name="demo-small", model="demo-small"
    )
    exporter = InMemorySpanExporter()
    run_export_spans(run_id=run.pk, exporter=exporter)
    assert {s.attributes["gen_ai.provider.name"] for s in exporter.get_finished_spans()} == {
        "tenure.demo"
    }


# --- over the wire ------------------------------------------------------------------


@pytest.fixture
def collector(settings, monkeypatch) -> Iterator[Collector]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = Collector().start()
    settings.TENURE_OTEL_ENDPOINT = server.url
    yield server
    server.stop()


def test_the_trace_reaches_an_otlp_http_collector(run, collector):
    assert run_export_spans(run_id=run.pk) == 5
    [request] = collector.requests
    assert collector.headers[0]["content-type"] == "application/x-protobuf"
    received = collector.spans()
    assert len(received) == 5
    resource, scope, _ = received[0]
    resource_attrs = {a.key: a.value.string_value for a in resource.attributes}
    assert resource_attrs["service.name"] == "tenure"
    assert scope.name == "tenure.agents"

    spans = {span.name: span for _, _, span in received}
    root = spans["invoke_agent refunds"]
    assert root.parent_span_id == b""
    assert int.from_bytes(root.trace_id, "big") == run_trace_id(run)
    tool = spans["execute_tool lookup_order"]
    assert tool.parent_span_id == root.span_id
    assert all(span.trace_id == root.trace_id for _, _, span in received)
    assert all(span.parent_span_id == root.span_id for _, _, span in received if span is not root)
    assert tool.status.code == PbStatus.STATUS_CODE_ERROR
    assert spans["chat gpt-4o-mini"].kind == PbSpan.SPAN_KIND_CLIENT

    def attributes(span):
        out = {}
        for a in span.attributes:
            kind = a.value.WhichOneof("value")
            out[a.key] = getattr(a.value, kind)
        return out

    root_attrs = attributes(root)
    assert root_attrs["gen_ai.operation.name"] == "invoke_agent"
    assert root_attrs["gen_ai.usage.input_tokens"] == 1500
    assert root_attrs["tenure.run.id"] == run.pk
    assert root_attrs["tenure.workflow"] == "refunds"
    assert root_attrs["tenure.cost_usd"] == pytest.approx(0.000345)
    assert attributes(tool)["gen_ai.tool.name"] == "lookup_order"
    assert root.start_time_unix_nano == int(STARTED.timestamp()) * 1_000_000_000
    assert root.end_time_unix_nano - root.start_time_unix_nano == 2500 * 1_000_000
    assert tool.end_time_unix_nano - tool.start_time_unix_nano == 150 * 1_000_000


def test_the_celery_task_exports_when_enabled(run, collector):
    result = export_run_trace.apply(args=(run.pk,))
    assert result.successful()
    assert result.result == 5
    assert len(collector.spans()) == 5


def test_a_refused_export_raises_for_the_task_to_retry(run, collector):
    collector.status = 400  # not retryable by the exporter itself: fails at once
    with pytest.raises(TraceExportFailed) as caught:
        run_export_spans(run_id=run.pk)
    assert str(caught.value) == ERR_EXPORT_FAILED.format(run_id=run.pk, count=5)


def test_the_task_retries_a_refused_export_then_gives_up(run, collector):
    collector.status = 400
    result = export_run_trace.apply(args=(run.pk,))
    assert result.failed()
    assert isinstance(result.result, TraceExportFailed)
    assert collector.attempts == 1 + EXPORT_MAX_RETRIES
    assert collector.spans() == []


def test_off_by_default_nothing_is_sent_or_queued(
    run, settings, django_capture_on_commit_callbacks
):
    settings.TENURE_OTEL_ENDPOINT = ""
    assert export_run_trace.apply(args=(run.pk,)).result == 0
    with django_capture_on_commit_callbacks() as callbacks:
        run_trace_dispatch(run=run)
    assert task_callbacks(callbacks) == []


def test_dispatch_queues_the_export_after_commit(
    run, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.TENURE_OTEL_ENDPOINT = "http://127.0.0.1:4318"
    sent = []
    monkeypatch.setattr(export_run_trace, "delay", lambda run_id: sent.append(run_id))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run_trace_dispatch(run=run)
    assert len(task_callbacks(callbacks)) == 1
    assert sent == [run.pk]


def test_the_traces_path_is_added_to_a_base_endpoint():
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("https://otlp.example/v1/traces") == "https://otlp.example/v1/traces"


def test_a_run_the_runner_recorded_exports_one_span_per_step(stub_openai):
    workflow = make_refund_workflow()
    item = make_item(workflow, "good")
    run = run_work_item(work_item_id=item.pk)
    exporter = InMemorySpanExporter()
    assert run_export_spans(run_id=run.pk, exporter=exporter) == 1 + run.steps.count()
    spans = exporter.get_finished_spans()
    names = [s.name for s in sorted(spans, key=lambda s: (s.parent is not None, s.start_time))]
    assert names[0] == f"invoke_agent {workflow.slug}"
    assert "execute_tool get_order" in names
    assert names.count("chat stub-small") == 3
    [root] = [s for s in spans if s.parent is None]
    assert root.attributes["gen_ai.usage.input_tokens"] == run.tokens_in
    assert root.attributes["tenure.stop_reason"] == "completed"
    assert all(root.start_time <= s.start_time <= s.end_time <= root.end_time for s in spans)
