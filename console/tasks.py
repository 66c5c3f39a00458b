"""Governance-side periodic jobs."""

from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_KEY = "tenure:worker-heartbeat"


@shared_task(name="console.worker_heartbeat", ignore_result=True)
def worker_heartbeat() -> str:
    """Record that a worker is alive and taking tasks (read by the readiness check)."""
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_KEY, now, timeout=600)
    return now
