"""Celery tasks: take ids, guard on status, call a service."""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from agents import throttle
from agents.runner import RunBusy, run_work_item
from agents.services import (
    held_work_restart,
    proposal_execute,
    stranded_redispatch,
    work_items_waiting,
)
from agents.tools import TransientToolError

logger = logging.getLogger(__name__)

EXECUTE_MAX_RETRIES = 5
HEARTBEAT_KEY = "tenure:worker-heartbeat"


@shared_task(name="agents.worker_heartbeat", ignore_result=True)
def worker_heartbeat() -> str:
    """Record that a worker is alive and taking tasks (read by the readiness check
    and /metrics)."""
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_KEY, now, timeout=600)
    return now


# Retries wait for a busy run or follow a crashed one; the run counts its own starts
# (TENURE_RUN_MAX_ATTEMPTS), and the sweeper re-sends what outlives these retries.
RUN_AGENT_MAX_RETRIES = 8


@shared_task(
    name="agents.run_agent",
    bind=True,
    acks_late=True,
    ignore_result=True,
    max_retries=RUN_AGENT_MAX_RETRIES,
)
def run_agent(self, work_item_id: int) -> int | None:
    """Run the agent on a work item. Redelivery is harmless: an item that already
    has a finished run is left alone; one that a worker is running is looked at
    again once that run would be stale (its worker may have died). A run that
    crashed is tried again after a pause, until it ends (at worst as a dead letter)."""
    try:
        with throttle.db_slot():
            run = run_work_item(work_item_id=work_item_id)
    except RunBusy as busy:
        raise self.retry(countdown=busy.retry_in) from busy
    except throttle.RunDeferred as deferred:
        if self.request.is_eager:
            # Run inline (a bench, a test): an eager retry would run again at once, in
            # a loop. The item stays received; the stranded-work sweeper sends it again.
            logger.warning("run of work item %s deferred: %s", work_item_id, deferred)
            return None
        # A limit, not a failure: as often as it takes (the run has not started).
        raise self.retry(countdown=deferred.retry_in, max_retries=None) from deferred
    retry_in = getattr(run, "retry_in", None)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)
    return run.pk if run is not None else None


@shared_task(
    name="agents.execute_action",
    bind=True,
    acks_late=True,
    ignore_result=True,
    max_retries=EXECUTE_MAX_RETRIES,
)
def execute_action(self, proposal_id: int) -> int | None:
    """Execute an approved proposal exactly once (see services.proposal_execute)."""
    try:
        execution = proposal_execute(proposal_id=proposal_id)
    except (TransientToolError, OperationalError, InterfaceError) as exc:
        # Same idempotency key on every retry: the receiver dedupes. A database error
        # after the side effect (a terminated backend, a deadlock) retries too, so the
        # execution is recorded instead of left "running".
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc
    return execution.pk if execution is not None else None


@shared_task(name="agents.redispatch_stranded", ignore_result=True)
def redispatch_stranded() -> dict[str, int]:
    """Periodic: re-send work that a broker outage or a lost task left behind."""
    return stranded_redispatch()


@shared_task(name="agents.run_agents", acks_late=True, ignore_result=True)
def run_agents(work_item_ids: list[int]) -> int:
    """Fan a batch out: one ``run_agent`` task per work item, published over one
    producer connection. Redelivery re-sends them, which is harmless (``run_agent``
    leaves an item with a finished or running run alone)."""
    waiting = work_items_waiting(work_item_ids=work_item_ids)
    with run_agent.app.producer_or_acquire() as producer:
        for item_id in waiting:
            run_agent.apply_async((item_id,), producer=producer)
    return len(waiting)


@shared_task(name="agents.resume_held_work", ignore_result=True)
def resume_held_work(workflow_id: int) -> int:
    """After a resume: restart what the pause held back (see services.held_work_restart)."""
    return held_work_restart(workflow_id=workflow_id)


@shared_task(name="agents.gate_callbacks", ignore_result=True)
def gate_callbacks() -> int:
    """Periodic: post the signed answers of settled gate calls to their callback URLs."""
    from agents.gateway import gate_callbacks_send

    return gate_callbacks_send()
