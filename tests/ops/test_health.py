"""/healthz and /readyz: no login, JSON, one entry per dependency."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from agents.tasks import HEARTBEAT_KEY, worker_heartbeat
from console.ops import health

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_heartbeat():
    cache.delete(HEARTBEAT_KEY)
    yield
    cache.delete(HEARTBEAT_KEY)


def test_healthz_answers_without_a_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_with_database_cache_and_a_recent_heartbeat(client):
    worker_heartbeat()  # what beat runs every 30 s
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "worker"}
    assert all(check["ok"] for check in body["checks"].values())


def test_readyz_is_503_without_a_heartbeat(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"]
    assert checks["cache"]["ok"]
    assert checks["worker"] == {
        "ok": False, "error": health.ERR_NO_HEARTBEAT, "latency_ms": checks["worker"]["latency_ms"]
    }  # fmt: skip


def test_readyz_is_503_with_a_stale_heartbeat(client, settings):
    settings.TENURE_HEARTBEAT_MAX_AGE = 60
    cache.set(HEARTBEAT_KEY, (timezone.now() - timedelta(minutes=5)).isoformat(), timeout=60)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["worker"]["age_seconds"] >= 300


def test_readyz_reports_a_failing_database_by_class_name_only(client, monkeypatch):
    def broken():
        raise ConnectionError("postgres://user:secret@db/tenure refused")

    monkeypatch.setitem(health.CHECKS, "database", broken)
    worker_heartbeat()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"]["error"] == "ConnectionError"
    assert b"secret" not in response.content
