"""Limits on runs in flight (agents/throttle.py), on the suite's real Redis."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from agents import throttle
from agents.models import Run, WorkItem
from agents.runner import run_work_item
from tests.agents.stub_openai import (  # noqa: F401 - fixtures
    make_item,
    make_refund_workflow,
    stub_openai_env_fixture,
    stub_openai_fixture,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def clean_buckets():
    """Each test starts with full buckets for the endpoint it names."""
    client = throttle._redis()
    for key in client.scan_iter(match=throttle._prefix() + "*"):
        client.delete(key)
    yield
    for key in client.scan_iter(match=throttle._prefix() + "*"):
        client.delete(key)


def test_a_workflow_holds_at_most_its_limit_of_slots(settings, clean_buckets):
    settings.TENURE_WORKFLOW_MAX_RUNS = 2
    first = throttle.workflow_slot_acquire(workflow_id=990001, lease_seconds=30)
    second = throttle.workflow_slot_acquire(workflow_id=990001, lease_seconds=30)
    with pytest.raises(throttle.RunDeferred) as deferred:
        throttle.workflow_slot_acquire(workflow_id=990001, lease_seconds=30)
    assert 1 <= deferred.value.retry_in <= 3
    # Another workflow has slots of its own.
    other = throttle.workflow_slot_acquire(workflow_id=990002, lease_seconds=30)
    assert throttle.workflow_slots_in_use(990001) == 2
    throttle.workflow_slot_release(first)
    third = throttle.workflow_slot_acquire(workflow_id=990001, lease_seconds=30)
    assert third is not None
    for slot in (second, other, third):
        throttle.workflow_slot_release(slot)
    assert throttle.workflow_slots_in_use(990001) == 0


def test_a_slot_whose_worker_died_expires(settings, clean_buckets):
    settings.TENURE_WORKFLOW_MAX_RUNS = 1
    throttle.workflow_slot_acquire(workflow_id=990003, lease_seconds=0.3)  # never released
    with pytest.raises(throttle.RunDeferred):
        throttle.workflow_slot_acquire(workflow_id=990003, lease_seconds=0.3)
    time.sleep(0.4)
    assert throttle.workflow_slot_acquire(workflow_id=990003, lease_seconds=0.3) is not None


def test_requests_a_minute_are_a_token_bucket(settings, clean_buckets):
    settings.TENURE_MODEL_RPM = 120  # two a second, a burst of 120
    settings.OPENAI_BASE_URL = "http://bucket-test.invalid/v1"
    waits = [throttle.model_request_wait() for _ in range(120)]
    assert waits == [0.0] * 120
    wait = throttle.model_request_wait()
    assert 0 < wait <= 0.5  # refills at 2/s
    time.sleep(wait + 0.05)
    assert throttle.model_request_wait() == 0.0


def test_tokens_a_minute_block_new_requests_once_spent(settings, clean_buckets):
    settings.TENURE_MODEL_TPM = 6000  # 100 tokens a second
    settings.OPENAI_BASE_URL = "http://tokens-test.invalid/v1"
    assert throttle.model_request_wait() == 0.0
    throttle.model_tokens_charge(6500)  # the response used more than the minute's budget
    wait = throttle.model_request_wait()
    assert wait > 4  # about 500 tokens of debt at 100/s


def test_no_limits_without_settings(settings, clean_buckets):
    settings.TENURE_MODEL_RPM = settings.TENURE_MODEL_TPM = 0
    settings.TENURE_WORKFLOW_MAX_RUNS = 0
    assert throttle.workflow_slot_acquire(workflow_id=990004, lease_seconds=30) is None
    assert all(throttle.model_request_wait() == 0.0 for _ in range(1000))


def test_a_full_workflow_defers_the_run_and_leaves_the_item_untouched(
    settings, stub_openai, clean_buckets
):
    settings.TENURE_WORKFLOW_MAX_RUNS = 1
    workflow = make_refund_workflow()
    item = make_item(workflow, "good")
    held = throttle.workflow_slot_acquire(workflow_id=workflow.pk, lease_seconds=30)
    with pytest.raises(throttle.RunDeferred):
        run_work_item(work_item_id=item.pk)
    item.refresh_from_db()
    assert item.status == WorkItem.Status.RECEIVED
    assert not Run.objects.filter(work_item=item).exists()
    assert stub_openai.requests == []
    throttle.workflow_slot_release(held)
    run = run_work_item(work_item_id=item.pk)
    assert run.status == Run.Status.PROPOSED
    # The run gave its slot back.
    assert throttle.workflow_slots_in_use(workflow.pk) == 0


def test_an_empty_request_bucket_defers_the_run_before_its_claim(
    settings, stub_openai, clean_buckets
):
    settings.TENURE_MODEL_RPM = 3  # one run's three calls, then a wait of 20 s
    workflow = make_refund_workflow()
    first, second = make_item(workflow, "good"), make_item(workflow, "good", text="Other.")
    assert run_work_item(work_item_id=first.pk).status == Run.Status.PROPOSED
    assert len(stub_openai.requests) == 3
    with pytest.raises(throttle.RunDeferred) as deferred:
        run_work_item(work_item_id=second.pk)
    assert deferred.value.retry_in >= 10
    second.refresh_from_db()
    assert second.status == WorkItem.Status.RECEIVED
    assert len(stub_openai.requests) == 3
    assert throttle.workflow_slots_in_use(workflow.pk) == 0


def test_database_slots_cap_the_threads_holding_a_connection(settings):
    settings.TENURE_RUN_DB_CONNECTIONS = 2
    throttle._db_slots = None  # sized from the setting on first use
    holding = []
    peak = []
    lock = threading.Lock()

    def work():
        with throttle.db_slot():
            with lock:
                holding.append(1)
                peak.append(len(holding))
            time.sleep(0.05)
            with lock:
                holding.pop()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    throttle._db_slots = None
    assert max(peak) == 2
    assert len(peak) == 8


def test_a_transaction_keeps_its_connection_while_the_model_is_awaited(settings):
    settings.TENURE_RUN_DB_CONNECTIONS = 1
    throttle._db_slots = None
    try:
        with throttle.db_slot():
            # pytest-django wraps the test in a transaction: nothing is given back.
            assert connection.in_atomic_block
            with throttle.db_released():
                assert throttle._held.slot is True
    finally:
        throttle._db_slots = None


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_connection_and_its_slot_are_given_back_while_waiting(
    settings,
):
    settings.TENURE_RUN_DB_CONNECTIONS = 1
    throttle._db_slots = None
    try:
        with throttle.db_slot():
            WorkItem.objects.count()
            assert connection.connection is not None
            other_took_it = threading.Event()

            def other() -> None:
                with throttle.db_slot():
                    other_took_it.set()

            with throttle.db_released():
                assert connection.connection is None  # closed while the model thinks
                t = threading.Thread(target=other)
                t.start()
                t.join(timeout=10)
                assert other_took_it.is_set()  # its slot served another thread
            assert throttle._held.slot is True
            WorkItem.objects.count()  # reconnects
        assert connection.connection is None  # the task's end gives it back
    finally:
        throttle._db_slots = None


def test_an_eager_run_that_is_deferred_is_left_for_the_sweeper(
    settings, stub_openai, clean_buckets, eager_tasks
):
    from agents import queue

    settings.TENURE_WORKFLOW_MAX_RUNS = 1
    workflow = make_refund_workflow()
    item = make_item(workflow, "good")
    held = throttle.workflow_slot_acquire(workflow_id=workflow.pk, lease_seconds=30)
    assert queue.send(queue.RUN_AGENT, item.pk)  # no retry loop, no error
    item.refresh_from_db()
    assert item.status == WorkItem.Status.RECEIVED
    throttle.workflow_slot_release(held)
