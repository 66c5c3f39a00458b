"""Evidence's jobs: the dashboards' rollups."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="evidence.metric_rollup", ignore_result=True)
def metric_rollup_task() -> int:
    """Roll up the dashboards' closed days not rolled yet, then the open day's closed
    hours (idempotent). Returns the number of days rolled."""
    from evidence.metrics import metric_days_roll, open_hours_roll

    rolled = metric_days_roll()
    open_hours_roll()
    return rolled
