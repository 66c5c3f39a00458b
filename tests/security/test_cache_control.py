"""No page served to a signed-in user may be kept by a cache (a shared proxy, or the
browser's back button after logging out): every one says ``no-store, private``.
Static files and anonymous health checks keep their own caching."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.security.routes import WEBHOOKS, args_for, client_as, named_routes

pytestmark = pytest.mark.django_db


def _directives(response) -> set[str]:
    return {part.strip() for part in response.get("Cache-Control", "").split(",") if part.strip()}


@pytest.mark.parametrize("role", ["reviewer", "manager", "ops", "admin"])
def test_every_signed_in_page_says_no_store(world, role):
    client = client_as(world.users[role])
    missing = []
    for name in named_routes():
        url = reverse(name, kwargs=args_for(world, name))
        if url.startswith("/api/") or name in WEBHOOKS:
            continue  # bearer tokens or request signatures, not sessions
        response = client.get(url)
        if response.status_code >= 500:
            continue  # the permission matrix reports those
        if not {"no-store", "private"} <= _directives(response):
            missing.append(f"GET {url} as {role}: {response.get('Cache-Control')!r}")
    assert missing == []


def test_a_signed_in_htmx_fragment_and_a_download_say_no_store(world):
    client = client_as(world.users["manager"])
    fragment = client.get(reverse("home"), HTTP_HX_REQUEST="true")
    export = client.get(
        reverse("workflow-export", kwargs={"slug": "refunds", "kind": "decisions", "fmt": "csv"})
    )
    for response in (fragment, export):
        assert {"no-store", "private"} <= _directives(response)


def test_health_checks_and_static_files_are_left_alone(client, reviewer):
    # The probe keeps its own headers, and its (absent) session is never read.
    health = client.get(reverse("healthz"))
    assert "Cookie" not in health.get("Vary", "")
    signed_in = client_as(reviewer)
    static = signed_in.get("/static/css/tenure.css")
    assert static.status_code == 200
    assert "no-store" not in _directives(static)
