"""Evidence's jobs: the dashboards' rollups and the retention of personal values."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="evidence.metric_rollup", ignore_result=True)
def metric_rollup_task() -> int:
    """Roll up the dashboards' closed days not rolled yet, then the open day's closed
    hours (idempotent). Returns the number of days rolled."""
    from evidence.metrics import metric_days_roll, open_hours_roll

    rolled = metric_days_roll()
    open_hours_roll()
    return rolled


@shared_task(name="evidence.apply_retention")
def apply_retention_task() -> dict[str, Any]:
    """Destroy personal values past each workflow's retention (rows stay); one audit
    event per workflow with rules, counts only."""
    from evidence.privacy import retention_apply

    return retention_apply()
