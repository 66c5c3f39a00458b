"""Shared fixtures: roles, workflows, this suite's cache keys, and a real Celery worker
process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from governance.permissions import Role, roles_ensure, workflow_grant_role
from tests.factories import PASSWORD, UserFactory, WorkflowFactory
from tests.redis_keys import suite_cache_keys_delete

ROOT = Path(__file__).resolve().parent.parent

# `make test` runs these markers in its slow stage, after the fast one. A test that
# starts a real Celery worker or a browser through these fixtures is slow whether or
# not it says so.
SLOW_FIXTURES = {"celery_worker_process": "worker", "browser": "browser"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in SLOW_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()) and not item.get_closest_marker(marker):
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def model_prices(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test with a database starts from the price table as the migrations seed
    it (a transactional test's flush empties the table), and this process reads it
    afresh (its copy in ``agents.prices`` never carries one test's prices into the
    next)."""
    from agents.prices import prices_forget

    prices_forget()
    if "_django_db_helper" in request.fixturenames or request.node.get_closest_marker("django_db"):
        from governance.prices import prices_seed

        request.getfixturevalue("_django_db_helper")
        prices_seed()
    yield
    prices_forget()


@pytest.fixture
def empty_cache() -> Iterator[None]:
    """The test starts and ends with none of this suite's keys in the cache (other
    users of the shared Redis database keep theirs: tests/redis_keys.py)."""
    suite_cache_keys_delete()
    yield
    suite_cache_keys_delete()


@pytest.fixture
def sent_tasks(monkeypatch):
    """What the runtime sends to its workers (``agents.queue.send``), as (task name,
    args); nothing reaches the broker."""
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr("agents.queue.send", lambda name, *args: sent.append((name, args)) or True)
    return sent


def sent_args(sent: list[tuple[str, tuple]], name: str) -> list:
    """The first argument of every ``name`` task sent (an item's or a proposal's id)."""
    return [args[0] for task, args in sent if task == name]


@pytest.fixture
def broker_down(monkeypatch):
    """The broker refuses every message (Redis unreachable)."""
    from celery import current_app
    from kombu.exceptions import OperationalError

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(current_app, "send_task", down)


@pytest.fixture
def eager_tasks():
    """Every task sent runs at once, in this process (Celery's eager mode)."""
    from celery import current_app

    before = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = before


@pytest.fixture
def roles(db):
    return roles_ensure()


def _user_with_role(roles, username: str, role: str):
    user = UserFactory(username=username)
    user.groups.add(roles[role])
    return user


@pytest.fixture
def workflow(db):
    return WorkflowFactory(slug="refunds", name="Refunds")


@pytest.fixture
def other_workflow(db):
    return WorkflowFactory(slug="access", name="Access requests")


@pytest.fixture
def reviewer(roles, workflow):
    user = _user_with_role(roles, "rita", Role.REVIEWER)
    workflow_grant_role(user=user, workflow=workflow, role=Role.REVIEWER)
    return user


@pytest.fixture
def manager(roles, workflow):
    user = _user_with_role(roles, "mona", Role.MANAGER)
    workflow_grant_role(user=user, workflow=workflow, role=Role.MANAGER)
    return user


@pytest.fixture
def second_manager(roles, workflow):
    user = _user_with_role(roles, "max", Role.MANAGER)
    workflow_grant_role(user=user, workflow=workflow, role=Role.MANAGER)
    return user


@pytest.fixture
def ops(roles):
    return _user_with_role(roles, "otto", Role.OPS)


@pytest.fixture
def admin_user(roles):
    return _user_with_role(roles, "ada", Role.ADMIN)


def login(user) -> Client:
    client = Client(enforce_csrf_checks=False)
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def client_for():
    return login


def _worker_env() -> dict[str, str]:
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="console.settings_test",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        CELERY_QUEUE=settings.CELERY_TASK_DEFAULT_QUEUE,
        PYTHONUNBUFFERED="1",
    )
    return env


class WorkerProcess:
    """A real `celery worker` subprocess on the test database and Redis."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, concurrency: int = 1) -> None:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "console", "worker",
                "--loglevel=INFO", f"--concurrency={concurrency}", "--pool=prefork",
                "-Q", settings.CELERY_TASK_DEFAULT_QUEUE, "--without-gossip", "--without-mingle",
                "--without-heartbeat", "-n", f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
            ],
            cwd=ROOT,
            env=_worker_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Celery worker exited early; see {self.log_path}")
            if b"ready." in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"Celery worker did not become ready; see {self.log_path}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the whole worker (main process and its pool children)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if getattr(self, "log", None):
            self.log.close()


def _purge_queue() -> None:
    from console.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(settings.CELERY_TASK_DEFAULT_QUEUE)


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path) -> Iterator[WorkerProcess]:
    """Start a real worker for one test. Tests using it commit their data
    (transactional_db), since the worker reads through its own connection."""
    # A queue that does not exist yet is fine: there is nothing stale to purge.
    with contextlib.suppress(Exception):
        _purge_queue()
    worker = WorkerProcess(tmp_path / "worker.log")
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
