"""evidence.sql against the ORM: the planner settings for the open day's slice
change how a query runs, never what it counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from evidence import sql
from evidence.metrics import metric_days_compute
from evidence.metrics.open_day import OPEN_COLUMNS
from tests.console.test_metric_rollups import _random_evidence
from tests.factories import WorkflowFactory

pytestmark = pytest.mark.django_db


def _columns(rows) -> list[tuple]:
    return sorted(
        (r.workflow_id, r.day, r.tool, *(getattr(r, c) for c in OPEN_COLUMNS)) for r in rows
    )


def _setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        return cursor.fetchone()[0]


def test_the_small_range_plan_counts_what_the_default_plan_counts():
    workflows = [WorkflowFactory(slug="refunds"), WorkflowFactory(slug="access")]
    now = timezone.now()
    for seed, workflow in enumerate(workflows):
        _random_evidence(workflow, now, items=40, seed=seed)
    ids = [w.pk for w in workflows]
    since = now - timedelta(days=2)
    default = metric_days_compute(ids, since=since, until=now)
    with transaction.atomic():
        sql.plan_for_small_ranges()
        assert _setting("enable_hashjoin") == "off"
        planned = metric_days_compute(ids, since=since, until=now)
    assert _columns(planned.values()) == _columns(default.values())
    assert default  # the window has rows


@pytest.mark.django_db(transaction=True)  # the settings are the real transaction's
def test_the_small_range_plan_ends_with_its_transaction():
    with transaction.atomic():
        sql.plan_for_small_ranges()
    assert _setting("enable_hashjoin") == "on"
    assert _setting("max_parallel_workers_per_gather") != "0"
