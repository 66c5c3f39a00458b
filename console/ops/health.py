"""Liveness and readiness for load balancers and orchestrators.

``/healthz`` answers while the process can serve a request. ``/readyz`` checks
what a request needs: PostgreSQL, the cache (Redis), and a live Celery worker
(its heartbeat, written every 30 s by beat, is recent). Errors name the
exception class only: a connection string never leaks into a public response.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache

from agents.tasks import HEARTBEAT_KEY

DEFAULT_HEARTBEAT_MAX_AGE = 120  # four missed beats of 30 s
ERR_NO_HEARTBEAT = "No worker heartbeat: is a Celery worker and beat running?"
ERR_STALE_HEARTBEAT = "The last worker heartbeat is {age:.0f} s old (limit {limit} s)."
ERR_CACHE_MISMATCH = "The cache did not return the value just written."


def heartbeat_max_age() -> int:
    return int(getattr(settings, "TENURE_HEARTBEAT_MAX_AGE", DEFAULT_HEARTBEAT_MAX_AGE))


def _timed(check: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = check()
    except Exception as exc:  # noqa: BLE001 - a readiness probe reports every failure
        result = {"ok": False, "error": type(exc).__name__}
    result["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True}


def check_cache() -> dict[str, Any]:
    key, value = f"readyz:{uuid.uuid4().hex}", uuid.uuid4().hex
    cache.set(key, value, timeout=10)
    ok = cache.get(key) == value
    cache.delete(key)
    return {"ok": True} if ok else {"ok": False, "error": ERR_CACHE_MISMATCH}


def check_worker(now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    raw = cache.get(HEARTBEAT_KEY)
    beat = parse_datetime(raw) if isinstance(raw, str) else None
    limit = heartbeat_max_age()
    if beat is None:
        return {"ok": False, "error": ERR_NO_HEARTBEAT}
    age = (now - beat).total_seconds()
    if age > limit:
        return {
            "ok": False,
            "age_seconds": round(age, 1),
            "error": ERR_STALE_HEARTBEAT.format(age=age, limit=limit),
        }
    return {"ok": True, "age_seconds": round(age, 1)}


CHECKS = {"database": check_database, "cache": check_cache, "worker": check_worker}


@login_not_required
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {name: _timed(check) for name, check in CHECKS.items()}
    ready = all(c["ok"] for c in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
