"""Evidence metrics, defined once.

Every number the dashboards, the ops overview, the gate, the evidence pack and the
API show is computed here, in SQL (aggregates and grouped rollups), with one
exception: field-level agreement counts the keys of two JSON objects per edited
decision over rows streamed from the database, which measured faster than doing
it in SQL (see ``definitions.field_edit_counts``). The package, by what a reader
looks for:

- ``scope``: what a metric is computed over (workflows, a tool, a window) and the
  calendar the screens count in;
- ``stats``: proportions, their Wilson interval, means;
- ``rows``: the row set each metric counts (also what its drill-down lists);
- ``definitions``: each metric once: its result type with its formula, and its
  computation from raw rows over any window;
- ``items``: the item-level comparison of the agent's plans with what the humans
  did (exact, edited, extra, missed; precision, recall, item agreement, coverage);
- ``live``: every metric of a scope from raw rows, per tool, per day, and the ops
  overview;
- ``rollups``: the ``MetricDay`` columns (``metric_days_compute``, the one
  definition of every rolled column, used both to roll closed days up and to
  compute today live) and the rolling of closed days;
- ``open_day``: the open day's closed hours, rolled up once into the cache;
- ``rolled``: the rollups as the screens read them, summed into the same results
  as ``live``;
- ``drilldown``: the rows behind a number.

Definitions (window = ``since <= t < until``):

- task success rate: work items resolved in the window (``resolved_at``) whose
  ``succeeded`` is set; successes are ``succeeded=True``.
- agreement: accepted / (accepted + edited + rejected) over decisions made in
  the window; an edit counts as a disagreement. Wilson 95% interval.
- field-level agreement (edits only): for each argument, the share of edited
  decisions whose proposal carried it and the reviewer left it unchanged.
- cost per successful outcome: (model cost + tool cost of runs started in the
  window + reviewer seconds of decisions in the window x hourly rate) /
  successful outcomes in the window.
- escalation rate: work items received in the window with an escalation /
  work items received in the window.
- retry rate: runs with at least one retry / runs.
- time-to-safe-fail: mean of (escalation created - its run's start).
- tool error rate: tool-call steps with an error / tool-call steps, per tool.

The raw-row functions compute over any window (the gate, the breaker, the evidence
pack and the API use them). The dashboards and the ops overview read the same
numbers from rollups instead (``MetricDay``: closed days stored once; today's
closed hours rolled up once into the cache; only the last hour or two computed
live), so their cost grows neither with the history nor through the day.
"""

from __future__ import annotations

from evidence.metrics.definitions import (
    CRITICAL,
    SECONDS_PER_HOUR,
    VERDICT_COUNT,
    ZERO,
    Agreement,
    Backlog,
    Cost,
    FieldAgreement,
    ToolErrors,
    agreement_counts,
    agreement_for,
    agreement_of,
    backlog_for,
    budget_trips_for,
    cost_for,
    cost_per_outcome,
    critical_in_last,
    field_agreement_for,
    is_critical,
    reject_reasons_for,
    reviewer_cost,
    reviewer_hourly_rate,
    sampled_agreement_last,
    sampled_agreement_of,
    time_to_safe_fail_for,
    tool_call_counts,
    tool_errors_for,
)
from evidence.metrics.drilldown import ERR_BAD_FILTER, ERR_UNKNOWN_METRIC, ROW_SETS, drilldown_rows
from evidence.metrics.items import (
    ActionCounts,
    Coverage,
    ItemComparison,
    ItemCounts,
    Proportion,
    coverage_for,
    item_comparison_for,
    item_comparison_for_screen,
    item_counts_for,
)
from evidence.metrics.live import (
    Day,
    WorkflowMetrics,
    WorkflowSpend,
    agreement_by_tool,
    daily_rollup,
    ops_overview,
    workflow_metrics,
)
from evidence.metrics.open_day import last_closed_hour, open_hours_read, open_hours_roll
from evidence.metrics.rolled import (
    Dashboard,
    SpendDay,
    agreement_by_tool_from_rows,
    agreement_read,
    dashboard_metrics,
    days_from_rows,
    metric_days_invalidate,
    metric_days_read,
    metric_days_roll,
    metrics_from_days,
    ops_overview_rolled,
    spend_days_read,
)
from evidence.metrics.rollups import (
    ALL_PARTS,
    OPS_PARTS,
    ROLLUP_GRACE,
    last_closed_day,
    metric_days_compute,
    metric_rows_merge,
)
from evidence.metrics.rows import (
    decisions_rows,
    escalated_filter,
    escalations_rows,
    outcomes_rows,
    received_rows,
    resolutions_rows,
    runs_rows,
    tool_steps_rows,
)
from evidence.metrics.scope import (
    Scope,
    days_between,
    start_of_today,
    start_of_week,
    window_start,
)
from evidence.metrics.stats import pct, ratio, wilson_interval

__all__ = [
    "ActionCounts",
    "Coverage",
    "ItemComparison",
    "ItemCounts",
    "Proportion",
    "coverage_for",
    "item_comparison_for",
    "item_comparison_for_screen",
    "item_counts_for",
    "ALL_PARTS",
    "CRITICAL",
    "ERR_BAD_FILTER",
    "ERR_UNKNOWN_METRIC",
    "OPS_PARTS",
    "ROLLUP_GRACE",
    "ROW_SETS",
    "SECONDS_PER_HOUR",
    "VERDICT_COUNT",
    "ZERO",
    "Agreement",
    "Backlog",
    "Cost",
    "Dashboard",
    "Day",
    "FieldAgreement",
    "Scope",
    "SpendDay",
    "ToolErrors",
    "WorkflowMetrics",
    "WorkflowSpend",
    "agreement_by_tool",
    "agreement_by_tool_from_rows",
    "agreement_counts",
    "agreement_for",
    "agreement_of",
    "agreement_read",
    "backlog_for",
    "budget_trips_for",
    "cost_for",
    "cost_per_outcome",
    "critical_in_last",
    "daily_rollup",
    "dashboard_metrics",
    "days_between",
    "days_from_rows",
    "decisions_rows",
    "drilldown_rows",
    "escalated_filter",
    "escalations_rows",
    "field_agreement_for",
    "is_critical",
    "last_closed_day",
    "last_closed_hour",
    "metric_days_compute",
    "metric_days_invalidate",
    "metric_days_read",
    "metric_days_roll",
    "metric_rows_merge",
    "metrics_from_days",
    "open_hours_read",
    "open_hours_roll",
    "ops_overview",
    "ops_overview_rolled",
    "outcomes_rows",
    "pct",
    "ratio",
    "received_rows",
    "reject_reasons_for",
    "resolutions_rows",
    "reviewer_cost",
    "reviewer_hourly_rate",
    "runs_rows",
    "sampled_agreement_last",
    "sampled_agreement_of",
    "spend_days_read",
    "start_of_today",
    "start_of_week",
    "time_to_safe_fail_for",
    "tool_call_counts",
    "tool_errors_for",
    "tool_steps_rows",
    "wilson_interval",
    "window_start",
    "workflow_metrics",
]
