"""Every URL, requested as every role (and anonymously), with GET and POST.

The URL list is read from the resolver, so a new page is covered the day it is
added: it must never answer 5xx, never serve an anonymous visitor, and never let
a reviewer of another workflow see or change this one.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.security.routes import PUBLIC, World, args_for, client_as, named_routes

pytestmark = pytest.mark.django_db


# Routes whose target belongs to the refunds workflow: an outsider must not get through.
def refunds_scoped(name: str, world: World) -> bool:
    return name.rsplit(":", 1)[-1] in world.kwargs


def test_every_route_has_sample_arguments(world):
    """A new route with arguments must be added to the fixture, so it is covered."""
    missing = []
    for name in named_routes():
        try:
            reverse(name, kwargs=args_for(world, name))
        except Exception:  # noqa: BLE001 - any reversal error means "not covered"
            missing.append(name)
    assert missing == []


@pytest.mark.parametrize("role", ["anonymous", "reviewer", "outsider", "manager", "ops", "admin"])
def test_no_route_answers_5xx_and_none_leaks(world, role):
    client = client_as(world.users[role])
    failures = []
    for name in named_routes():
        url = reverse(name, kwargs=args_for(world, name))
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            status = response.status_code
            where = f"{method.upper()} {url} as {role}: {status}"
            if status >= 500 and name != "readyz":
                failures.append(where)
            sent_to_login = status == 302 and response.url.startswith(reverse("login"))
            if (
                role == "anonymous"
                and name not in PUBLIC
                and not url.startswith("/api/")
                and not sent_to_login
            ):
                failures.append(where + " (anonymous not sent to login)")
            api_scoped = url.startswith("/api/v1/workflows/")
            if role == "anonymous" and api_scoped and status not in (401, 405):
                failures.append(where + " (API without a token)")
            if role == "outsider" and refunds_scoped(name, world) and status == 200:
                failures.append(where + " (outsider reached another workflow)")
    assert failures == []


@pytest.mark.parametrize(
    ("role", "name", "expected"),
    [
        ("reviewer", "review-queue", 200),
        ("reviewer", "workflow-promote", 403),
        ("reviewer", "evidence-dashboard", 200),
        ("reviewer", "audit-log", 403),
        ("outsider", "review-queue", 404),
        ("outsider", "workflow-detail", 404),
        ("manager", "workflow-promote", 200),
        ("manager", "review-queue", 403),
        ("manager", "audit-log", 200),
        ("ops", "ops-overview", 200),
        ("ops", "workflow-detail", 200),
        ("ops", "workflow-promote", 403),
        ("admin", "workflow-promote", 200),
        ("admin", "review-queue", 200),
        ("reviewer", "workflow-export", 403),
        ("ops", "workflow-export", 403),
        ("manager", "workflow-export", 200),
        ("admin", "workflow-export", 200),
    ],
)
def test_role_sees_what_its_job_needs(world, role, name, expected):
    url = reverse(name, kwargs=args_for(world, name))
    assert client_as(world.users[role]).get(url).status_code == expected


@pytest.mark.parametrize(
    ("role", "expected_paused"), [("reviewer", False), ("manager", False), ("ops", True)]
)
def test_only_ops_can_pull_the_kill_switch(world, role, expected_paused):
    from governance.models import Workflow

    url = reverse("workflow-pause", kwargs={"slug": "refunds"})
    client_as(world.users[role]).post(url, {"reason": "matrix"})
    assert Workflow.objects.get(slug="refunds").paused is expected_paused
