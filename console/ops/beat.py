"""Celery beat's periodic jobs. Settings: ``CELERY_BEAT_SCHEDULE = BEAT_SCHEDULE``.

Each entry ``expires`` before its next run, so a backlog (beat kept sending
while no worker ran) never runs a job twice in a row.

Only tasks that exist are scheduled. Not yet here, because no task does it yet:
lease expiry (claims and stale runs are taken over lazily today: a claim upsert
takes an expired lease, ``run_agent`` retries a stale run) and SLA notifications.
Add them as ``{"task": ..., "schedule": ..., "options": {"expires": ...}}`` when
their tasks land.
"""

from __future__ import annotations

from datetime import timedelta

BEAT_SCHEDULE = {
    # Outside agents that gave a callback URL hear when their held call settles.
    "gate-callbacks": {
        "task": "agents.gate_callbacks",
        "schedule": timedelta(seconds=10),
        "options": {"expires": 9},
    },
    # The readiness check and /metrics read this heartbeat.
    "worker-heartbeat": {
        "task": "agents.worker_heartbeat",
        "schedule": timedelta(seconds=30),
        "options": {"expires": 25},
    },
    # Purge traces past each workflow's retention.
    "retention-purge": {
        "task": "agents.purge_old_traces",
        "schedule": timedelta(hours=1),
        "options": {"expires": 60 * 55},
    },
    # Personal values past each workflow's retention, kind by kind (evidence.privacy).
    "privacy-retention": {
        "task": "evidence.apply_retention",
        "schedule": timedelta(hours=1),
        "options": {"expires": 60 * 55},
    },
    # The circuit breaker: demote a workflow whose sampled agreement or tool error
    # budget crossed its floor, even when no new decision arrives to trigger it.
    "breaker-sweep": {
        "task": "governance.breaker_sweep",
        "schedule": timedelta(minutes=5),
        "options": {"expires": 60 * 4},
    },
    # Approvals waiting past their SLA: one signed webhook each (deduplicated).
    "sla-notifications": {
        "task": "agents.notify_sla_breaches",
        "schedule": timedelta(minutes=5),
        "options": {"expires": 60 * 4},
    },
    # Audit events whose process died between commit and seal get their place in
    # the chain (every commit seals its own; this only catches the leftovers).
    "audit-seal": {
        "task": "governance.audit_seal",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 50},
    },
    # The audit chains' heads, written outside the database (governance.checkpoints):
    # what a database writer cannot rewrite unseen.
    "audit-checkpoint": {
        "task": "governance.audit_checkpoint",
        "schedule": timedelta(minutes=5),
        "options": {"expires": 60 * 4},
    },
    # The dashboards' daily rollups: closed days are stored once (reads roll up a
    # missing day lazily too; this keeps the first read of the morning fast).
    "metric-rollup": {
        "task": "evidence.metric_rollup",
        "schedule": timedelta(minutes=15),
        "options": {"expires": 60 * 14},
    },
    # Work a broker outage left behind (received items, approved actions) is re-sent.
    "redispatch-stranded": {
        "task": "agents.redispatch_stranded",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 50},
    },
}
