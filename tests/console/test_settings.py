from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    # The test settings export DATABASE_URL and friends; a subprocess starts from none.
    ours = ("DJANGO_", "TENURE_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "CELERY_", "DEBUG")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deploy_check_is_clean_with_debug_off(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY="a-production-like-secret-key-" + "k" * 40,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres",
        REDIS_URL="redis://127.0.0.1:6379/15",
        TENURE_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_embedded_default_needs_no_environment(tmp_path):
    """No DATABASE_URL, no REDIS_URL, no SECRET_KEY: SQLite and a filesystem broker."""
    result = _manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, bool(s.SECRET_KEY))",
        TENURE_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "filesystem://", "True"]
    assert (tmp_path / "secret_key").exists()


def test_the_embedded_default_migrates_and_seeds_the_demo(tmp_path):
    """What `make run` does first, on SQLite: a path that only works on PostgreSQL
    (raw SQL, casts) breaks the two-command start, so it is exercised here, twice
    (the seed is idempotent: the second run finds every item already there)."""
    for _ in range(2):
        migrated = _manage("migrate", "--no-input", TENURE_DATA_DIR=str(tmp_path))
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        seeded = _manage(
            "seed_demo", "--items", "3", "--history", "10", TENURE_DATA_DIR=str(tmp_path)
        )
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        assert "Logins (password for all:" in seeded.stdout
    assert (tmp_path / "tenure.sqlite3").exists()


def test_the_embedded_default_runs_the_whole_cycle(tmp_path):
    """The runtime, the review queue and the audit log use hand-written SQL on their
    hot paths (console/sql.py): on SQLite too, work items become proposals, the
    reviewers' approvals execute exactly once, and the audit chain verifies."""
    for step in (("migrate", "--no-input"), ("seed_demo", "--items", "6", "--history", "0")):
        done = _manage(*step, TENURE_DATA_DIR=str(tmp_path))
        assert done.returncode == 0, done.stderr[-3000:]
    script = (ROOT / "tests" / "console" / "embedded_cycle.py").read_text()
    result = _manage(
        "shell",
        "--no-imports",
        "-c",
        script,
        TENURE_DATA_DIR=str(tmp_path),
        CELERY_TASK_ALWAYS_EAGER="1",
        TENURE_HTTPS="0",  # as make run starts it
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    counts = dict(
        pair.split("=")
        for line in result.stdout.splitlines()
        if line.startswith("CYCLE")
        for pair in line.split()[1:]
    )
    assert int(counts["proposed"]) > 0
    assert int(counts["decided"]) >= int(counts["proposed"])
    assert int(counts["executed"]) > 0
    assert int(counts["refunds"]) > 0
    assert "AUDIT broken=0" in result.stdout
