"""The console through PgBouncer in transaction mode: gunicorn and a threaded runs
worker connect through it (prepared statements off), an item is ingested over the
API, its run finishes on the worker, and a reviewer's pages answer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from agents.models import Run, WorkItem
from bench.pgbouncer import PgBouncer, binary
from governance.api.tokens import api_token_create
from governance.models import ApiToken
from governance.permissions import Role, workflow_grant_role
from tests.agents.stub_openai import (  # noqa: F401 - fixtures
    make_refund_workflow,
    stub_openai_env_fixture,
    stub_openai_fixture,
)
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _wait(check, seconds: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    detail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise AssertionError(f"{what} within {seconds}s\n{detail}")


def test_web_and_runs_work_through_pgbouncer_in_transaction_mode(tmp_path, stub_openai_env, roles):
    assert binary(), "PgBouncer is not installed (tests/ensure_services.py installs it)"
    workflow = make_refund_workflow()
    user = UserFactory(username="rita-bouncer")
    user.groups.add(roles[Role.REVIEWER])
    workflow_grant_role(user=user, workflow=workflow, role=Role.REVIEWER)
    _, token = api_token_create(
        name="bouncer", workflows=[workflow], verbs=[ApiToken.Verb.WORK_ITEMS_WRITE], actor="t"
    )
    db = settings.DATABASES["default"]
    bouncer = PgBouncer(upstream=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}").start()
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "console.settings_test",
        "DATABASE_URL": bouncer.url(db["NAME"]),
        "DATABASE_PREPARE_THRESHOLD": "",  # off: a server connection serves other clients
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "TENURE_RUNS_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE + "-runs",
        "TENURE_RUN_DB_CONNECTIONS": "2",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    web = _spawn(
        [sys.executable, "-m", "gunicorn", "console.wsgi:application", "--bind",
         f"127.0.0.1:{port}", "--workers", "1", "--threads", "4", "--no-control-socket"],
        env, web_log,
    )  # fmt: skip
    worker = _spawn(
        [sys.executable, "-m", "celery", "-A", "console", "worker", "--loglevel=INFO",
         "--pool=threads", "--concurrency=8", "-Q", env["TENURE_RUNS_QUEUE"],
         "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-n", f"bouncer-{os.getpid()}@%h"],
        env, worker_log,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def web_up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(web_up, 60, "gunicorn answered /healthz", web_log)
        _wait(lambda: b"ready." in worker_log.read_bytes(), 60, "the worker started", worker_log)

        # Ingest over the API: the run is routed to the runs queue, runs on the threaded
        # worker through PgBouncer, and ends in a proposal.
        response = httpx.post(
            f"{base}/api/v1/workflows/{workflow.slug}/work-items",
            json={"payload": {"text": "[scenario:good] Order A-1001 arrived broken."}},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "bouncer-1"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        item = WorkItem.objects.get(workflow=workflow, external_id="bouncer-1")

        def run_done() -> bool:
            run = Run.objects.filter(work_item=item).first()
            return run is not None and run.status == Run.Status.PROPOSED

        _wait(run_done, 90, "the run finished through PgBouncer", worker_log)
        assert len(stub_openai_env.scenario_requests("good")) == 3

        # A reviewer signs in and works the queue: sessions, claims, pages.
        with httpx.Client(base_url=base, timeout=30) as client:
            page = client.get("/login/")
            csrf = CSRF_RE.search(page.text).group(1)
            signed_in = client.post(
                "/login/",
                data={"username": user.username, "password": PASSWORD,
                      "csrfmiddlewaretoken": csrf},
            )  # fmt: skip
            assert signed_in.status_code == 302, signed_in.text[:500]
            for _ in range(3):
                queue = client.get(f"/w/{workflow.slug}/queue/")
                assert queue.status_code == 200
                assert "create_refund" in queue.text
            assert client.get(f"/w/{workflow.slug}/dashboard/").status_code == 200

        # It all really went through PgBouncer.
        log = bouncer.log()
        assert f"db={db['NAME']}" in log or db["NAME"] in log, log[-2000:]
        assert "ERROR" not in web_log.read_text(errors="replace")
        assert "prepared statement" not in worker_log.read_text(errors="replace")
    finally:
        _stop(web)
        _stop(worker)
        bouncer.stop()
