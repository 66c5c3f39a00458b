"""A database made on the old layout (every model in console and agents) migrates in
place to the layered apps: no row is lost, content types and grants follow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def scratch_database():
    db = settings.DATABASES["default"]
    name = f"{db['TEST']['NAME']}_old_layout"
    admin = f"host={db['HOST']} port={db['PORT']} user={db['USER']} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(stage: str, url: str) -> str:
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "console.settings_test"}
    result = subprocess.run(
        [sys.executable, "tests/architecture/old_layout.py", stage],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_a_database_on_the_old_layout_migrates_without_losing_a_row(scratch_database):
    _run("old", scratch_database)
    state = json.loads(_run("new", scratch_database).strip().splitlines()[-1])
    assert state["workflow"] == ["refunds", "supervised"]
    assert state["grants"] == [["create_refund", "supervised"]]
    assert state["metric_day"] == [[7, 5]]
    assert state["orders"] == ["A-1001"]
    assert state["content_types"] == ["demo.sandboxorder", "governance.workflow"]
    assert state["rita_reviews_refunds"] is True, "a per-object grant made before the move holds"
    assert state["audit_broken"] == []
