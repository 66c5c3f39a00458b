"""Console routes that live beside the API: exports, and the ops endpoints
(/metrics, /healthz, /readyz), included at the site root."""

from __future__ import annotations

from django.urls import include, path

from console import export_views

urlpatterns = [
    path(
        "w/<slug:slug>/export/<slug:kind>.<slug:fmt>",
        export_views.export_download,
        name="workflow-export",
    ),
    path("", include("console.ops.urls")),
]
