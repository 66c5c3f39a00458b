"""API fixtures: tokens and a client that sends them."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
from django.test import Client

from governance.api.tokens import api_token_create
from governance.models import ApiToken, Workflow

ALL_VERBS = tuple(ApiToken.Verb.values)


class ApiClient:
    """A django test Client that sends a bearer token and JSON bodies."""

    def __init__(self, token: str | None) -> None:
        self.client = Client()
        self.token = token

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        out = dict(headers or {})
        if self.token is not None:
            out.setdefault("Authorization", f"Bearer {self.token}")
        return out

    def get(self, path: str, data: dict | None = None, headers: dict | None = None, **extra):
        return self.client.get(path, data or {}, headers=self._headers(headers), **extra)

    def post(self, path: str, body=None, headers: dict | None = None, raw: bytes | None = None):
        import json

        content = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(
            path, content, content_type="application/json", headers=self._headers(headers)
        )


@pytest.fixture(autouse=True)
def _fresh_rate_windows(empty_cache):
    """Rate-limit counters are keyed by the token's random prefix; emptying the suite's
    cache around each test is belt and braces."""


@pytest.fixture
def make_token(db) -> Callable[..., tuple[ApiToken, str]]:
    def make(
        workflows: Iterable[Workflow],
        verbs: Iterable[str] = ALL_VERBS,
        name: str = "billing",
        rate_limit_per_minute: int = 600,
    ) -> tuple[ApiToken, str]:
        return api_token_create(
            name=name,
            workflows=list(workflows),
            verbs=list(verbs),
            actor=None,
            rate_limit_per_minute=rate_limit_per_minute,
        )

    return make


@pytest.fixture
def api(workflow, make_token) -> ApiClient:
    """A client with every verb on the ``refunds`` workflow."""
    _, plain = make_token([workflow])
    return ApiClient(plain)


@pytest.fixture
def api_for(make_token) -> Callable[..., ApiClient]:
    def build(workflows: Iterable[Workflow], verbs: Iterable[str] = ALL_VERBS, **kw) -> ApiClient:
        _, plain = make_token(workflows, verbs, **kw)
        return ApiClient(plain)

    return build


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]
