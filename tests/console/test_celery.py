from __future__ import annotations

import time

import pytest
from django.core.cache import cache
from django.db import transaction

from agents.tasks import HEARTBEAT_KEY, worker_heartbeat


@pytest.mark.worker
def test_task_dispatched_on_commit_runs_in_a_real_worker(celery_worker_process):
    cache.delete(HEARTBEAT_KEY)
    with transaction.atomic():
        worker_heartbeat.delay_on_commit()
        # Nothing is sent while the transaction is open.
        time.sleep(0.5)
        assert cache.get(HEARTBEAT_KEY) is None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and cache.get(HEARTBEAT_KEY) is None:
        time.sleep(0.2)
    assert cache.get(HEARTBEAT_KEY) is not None, "the worker never ran the task"


@pytest.mark.worker
def test_task_in_a_rolled_back_transaction_is_never_sent(celery_worker_process):
    cache.delete(HEARTBEAT_KEY)

    def dispatch_then_fail() -> None:
        with transaction.atomic():
            worker_heartbeat.delay_on_commit()
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        dispatch_then_fail()
    time.sleep(3)
    assert cache.get(HEARTBEAT_KEY) is None
