from __future__ import annotations

import pytest

from agents.models import WorkItem
from demo.workflows import demo_feed_one, demo_seed
from tests.callbacks import task_callbacks

pytestmark = pytest.mark.django_db


def test_the_feed_adds_one_new_item_per_demo_workflow(django_capture_on_commit_callbacks):
    demo_seed(items_per_workflow=2)
    before = WorkItem.objects.count()
    with django_capture_on_commit_callbacks() as callbacks:
        first = demo_feed_one()
    second = demo_feed_one()
    assert len(first) == 3
    assert len(second) == 3
    assert WorkItem.objects.count() == before + 6
    assert {i.external_id for i in first}.isdisjoint({i.external_id for i in second})
    assert len(task_callbacks(callbacks)) == 3, "each new item is sent to the agent on commit"
