"""The OpenAPI document and the docs page are served by the app, under the CSP."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db

ROUTES = {
    "/api/v1/workflows/{slug}/work-items": {"post"},
    "/api/v1/workflows/{slug}/work-items/batch": {"post"},
    "/api/v1/proposals": {"get"},
    "/api/v1/decisions": {"get"},
    "/api/v1/executions": {"get"},
    "/api/v1/workflows/{slug}/actions/report": {"post"},
    "/api/v1/workflows/{slug}/history": {"post"},
    "/api/v1/workflows/{slug}/metrics": {"get"},
    "/api/v1/workflows/{slug}/export/{kind}": {"get"},
}


def test_openapi_document_lists_every_route_without_a_login(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for path, methods in ROUTES.items():
        assert methods <= set(schema["paths"][path]), path
    assert schema["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"


def test_docs_page_loads_only_same_origin_scripts(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert scripts
    assert all(src.startswith("/api/v1/docs/assets/") for src in scripts)
    assert "script-src 'self'" in response["Content-Security-Policy"]
    # No inline executable script: the only inline block is JSON data.
    assert re.findall(r"<script(?![^>]*(src=|application/json))", html) == []
    for src in scripts:
        asset = client.get(src)
        assert asset.status_code == 200
        assert asset["Content-Type"] in ("text/javascript", "application/javascript")


def test_unknown_docs_assets_are_404(client):
    assert client.get("/api/v1/docs/assets/settings.py").status_code == 404
