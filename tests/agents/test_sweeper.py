from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents import queue
from agents.models import WorkItem
from agents.services import STRANDED_AFTER, stranded_redispatch
from tests.conftest import sent_args
from tests.factories import WorkItemFactory

pytestmark = pytest.mark.django_db


def test_sweeper_resends_items_that_never_started(workflow, sent_tasks):
    old = WorkItemFactory(workflow=workflow, status=WorkItem.Status.RECEIVED)
    fresh = WorkItemFactory(workflow=workflow, status=WorkItem.Status.RECEIVED)
    WorkItem.objects.filter(pk=old.pk).update(
        updated_at=timezone.now() - STRANDED_AFTER - timedelta(seconds=5)
    )
    assert stranded_redispatch() == {"items": 1, "actions": 0}
    sent = sent_args(sent_tasks, queue.RUN_AGENT)
    assert sent == [old.pk], "a fresh item may still be in the queue: left alone"
    assert fresh.pk not in sent


def test_sweeper_leaves_paused_workflows_alone(workflow, sent_tasks):
    workflow.paused = True
    workflow.save()
    item = WorkItemFactory(workflow=workflow, status=WorkItem.Status.RECEIVED)
    WorkItem.objects.filter(pk=item.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    assert stranded_redispatch()["items"] == 0
    sent = sent_args(sent_tasks, queue.RUN_AGENT)
    assert sent == []


def test_a_broker_outage_does_not_fail_the_request_that_saved_the_work(workflow, broker_down):
    from agents import queue

    assert queue.send(queue.RUN_AGENT, 1) is False


def test_sweeper_resends_a_run_whose_worker_and_task_were_both_lost(workflow, sent_tasks):
    """The soak's finding: a worker SIGKILLed mid-run, then Redis restarted without
    persistence, lost the unacknowledged task too; the item stayed 'running'."""
    from tests.factories import RunFactory

    lost = WorkItemFactory(workflow=workflow, status=WorkItem.Status.RUNNING)
    RunFactory(work_item=lost, status="running", stop_reason="")
    busy = WorkItemFactory(workflow=workflow, status=WorkItem.Status.RUNNING)
    WorkItem.objects.filter(pk=lost.pk).update(
        updated_at=timezone.now() - STRANDED_AFTER - timedelta(seconds=5)
    )
    assert stranded_redispatch()["items"] == 1
    sent = sent_args(sent_tasks, queue.RUN_AGENT)
    assert sent == [lost.pk], "a run that may still be thinking is left alone"
    assert busy.pk not in sent
