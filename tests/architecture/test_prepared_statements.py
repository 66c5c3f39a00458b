"""Prepared statements are a database setting, off by default (PgBouncer in transaction
mode cannot hold them), and the hand-written statements honour it."""

from __future__ import annotations

import pytest
from django.db import connection

from governance import sql as governance_sql
from governance import sqlkit
from tests.factories import WorkflowFactory


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def threshold():
    options = connection.settings_dict.setdefault("OPTIONS", {})
    before = options.get("prepare_threshold", "absent")

    def use(value):
        if value is None:
            options.pop("prepare_threshold", None)
        else:
            options["prepare_threshold"] = value
        connection.close()

    yield use
    if before == "absent":
        options.pop("prepare_threshold", None)
    else:
        options["prepare_threshold"] = before
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_by_default_nothing_is_prepared(threshold):
    threshold(None)
    workflow = WorkflowFactory()
    for _ in range(10):
        governance_sql.workflow_state(workflow.pk)
    assert not sqlkit.prepared_statements_on()
    assert not any("autonomy_level" in text for text in _prepared())


@pytest.mark.django_db(transaction=True)
def test_with_the_setting_the_hand_written_statements_are_prepared(threshold):
    threshold(2)
    workflow = WorkflowFactory()
    for _ in range(5):
        assert governance_sql.workflow_state(workflow.pk) == (False, workflow.autonomy_level)
    assert sqlkit.prepared_statements_on()
    assert any("paused, autonomy_level" in text for text in _prepared())


@pytest.mark.parametrize(("value", "expected"), [("5", "5"), ("", "None")])
def test_the_setting_comes_from_the_environment(value, expected):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **os.environ,
        "DATABASE_URL": "postgres://u@127.0.0.1:5432/x",
        "DATABASE_PREPARE_THRESHOLD": value,
        "SECRET_KEY": "x",
    }
    code = (
        "from console import settings; "
        "print(settings.DATABASES['default'].get('OPTIONS', {}).get('prepare_threshold'))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected
