"""Beat: every periodic job exists and expires before its next run."""

from __future__ import annotations

from console.celery import app
from console.ops.beat import BEAT_SCHEDULE


def test_every_scheduled_task_is_registered():
    app.loader.import_default_modules()
    for name, entry in BEAT_SCHEDULE.items():
        assert entry["task"] in app.tasks, name


def test_every_entry_expires_before_it_runs_again():
    for name, entry in BEAT_SCHEDULE.items():
        expires = entry["options"]["expires"]
        assert 0 < expires < entry["schedule"].total_seconds(), name


def test_the_heartbeat_runs_often_enough_for_readiness():
    from console.ops.health import DEFAULT_HEARTBEAT_MAX_AGE

    beat = BEAT_SCHEDULE["worker-heartbeat"]["schedule"].total_seconds()
    assert beat * 3 <= DEFAULT_HEARTBEAT_MAX_AGE
