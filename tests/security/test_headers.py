from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_pages_carry_the_security_headers(reviewer, client_for):
    response = client_for(reviewer).get(reverse("home"))
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    csp = response["Content-Security-Policy"]
    for directive in ("default-src 'self'", "object-src 'none'", "base-uri 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp


def test_session_and_csrf_cookies_are_set_safely(reviewer, settings):
    client = Client()
    response = client.post(
        reverse("login"), {"username": "rita", "password": "correct-horse-battery"}
    )
    session = response.cookies[settings.SESSION_COOKIE_NAME]
    assert session["httponly"]
    assert session["samesite"] == "Lax"
    assert client.get(reverse("login")).status_code == 302  # logged in: sent home


def test_responses_carry_a_request_id(reviewer, client_for):
    response = client_for(reviewer).get(reverse("home"))
    assert len(response["X-Request-ID"]) >= 16


@pytest.mark.django_db
def test_pages_that_differ_for_htmx_patch_vary_instead_of_overwriting_it(client_for, reviewer):
    """Vary keeps the session middleware's Cookie and adds HX-Request (a cache must
    tell the fragment from the page and one user's page from another's)."""
    from django.urls import reverse

    client = client_for(reviewer)
    for url in (reverse("home"), reverse("review-queue-all")):
        vary = {v.strip() for v in client.get(url, HTTP_HX_REQUEST="true")["Vary"].split(",")}
        assert {"Cookie", "HX-Request"} <= vary, (url, vary)
