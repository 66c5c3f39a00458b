"""What a live span costs the caller's thread (agents.tracing.step_emit).

Three measures over 2000 step spans: tracing off; tracing on with an exporter that
drops the spans (the caller's own cost: building the span and queueing it); tracing
on with the OTLP/HTTP exporter and a collector in this same process (the collector
and the export thread then compete with the caller for the GIL, so this is an upper
bound). Run: PYTHONPATH=. TENURE_TEST_DB=... .venv/bin/python bench/otel_span_emit.py
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings_test")
django.setup()

from django.conf import settings  # noqa: E402
from opentelemetry.sdk.trace.export import SpanExportResult  # noqa: E402

from agents import otel, tracing  # noqa: E402
from agents.models import Run, Step  # noqa: E402
from tests.otel.collector import Collector  # noqa: E402

N = 2000


class Drop:
    def export(self, spans):
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


def measure(label: str) -> None:
    run = Run(pk=1, created_at=datetime(2026, 1, 1, tzinfo=UTC))
    steps = [
        Step(run=run, index=i, kind="model_call", name="m", model="gpt-4o-mini", latency_ms=5)
        for i in range(N)
    ]
    tracing.step_emit(run=run, step=steps[0])  # the provider and exporter start here
    tracing.flush()
    started = time.perf_counter()
    for step in steps:
        tracing.step_emit(run=run, step=step)
    emitted = time.perf_counter() - started
    tracing.flush()
    done = time.perf_counter() - started
    print(f"{label}: {emitted / N * 1e6:.0f} us per span on the caller; all out in {done:.2f}s")
    tracing.reset()


settings.TENURE_OTEL_ENDPOINT = ""
measure("tracing off")

settings.TENURE_OTEL_ENDPOINT = "http://127.0.0.1:9"
original = otel.default_exporter
tracing.default_exporter = Drop
measure("on, exporter dropping spans")
tracing.default_exporter = original

collector = Collector().start()
settings.TENURE_OTEL_ENDPOINT = collector.url
measure("on, OTLP/HTTP to an in-process collector")
print(f"collector received {len(collector.spans())} spans")
collector.stop()
