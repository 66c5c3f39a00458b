"""URLs of the ops pages."""

from __future__ import annotations

from django.urls import path

from console.ops import health
from evidence import prometheus

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", prometheus.metrics_view, name="prometheus-metrics"),
]
