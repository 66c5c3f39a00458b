"""Run the whole console: migrate, seed the demo, then web and a Celery worker.

The embedded default needs nothing installed: SQLite and Celery's filesystem
broker under data/. With DATABASE_URL and REDIS_URL set, the same command runs
against PostgreSQL and Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start the whole Tenure console (web + Celery workers) with the demo seeded."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--bind", default=os.environ.get("TENURE_BIND", "127.0.0.1:8000"))
        parser.add_argument(
            "--mcp-port", type=int, default=int(os.environ.get("TENURE_MCP_PORT", "8010"))
        )
        parser.add_argument("--no-seed", action="store_true")

    def handle(self, *args, bind: str, no_seed: bool, mcp_port: int, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database migrated.")
        if not no_seed:
            call_command("seed_demo", stdout=self.stdout)
        verbose = os.environ.get("TENURE_VERBOSE", "") not in ("", "0")
        log_level = "INFO" if verbose else "WARNING"
        # Agent runs wait on the model: a threaded worker of their own keeps many in
        # flight (on SQLite, a few: one file takes one writer at a time).
        sqlite = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
        runs_queue = os.environ.setdefault(
            "TENURE_RUNS_QUEUE", f"{settings.CELERY_TASK_DEFAULT_QUEUE}-runs"
        )
        runs_concurrency = os.environ.get("TENURE_RUNS_CONCURRENCY", "8" if sqlite else "100")
        runs_env = {"TENURE_RUN_DB_CONNECTIONS": "4" if sqlite else "16", **os.environ}
        children = [
            self._spawn(
                [sys.executable, "-m", "celery", "-A", "console", "worker", "--beat",
                 f"--loglevel={log_level}", "--concurrency=2",
                 "-Q", settings.CELERY_TASK_DEFAULT_QUEUE,
                 "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")]
            ),
            self._spawn(
                [sys.executable, "-m", "celery", "-A", "console", "worker",
                 f"--loglevel={log_level}", "--pool=threads",
                 f"--concurrency={runs_concurrency}", "-Q", runs_queue, "-n", "runs@%h"],
                env=runs_env,
            ),
            self._spawn(
                [sys.executable, "-m", "gunicorn", "console.wsgi:application", "--bind", bind,
                 "--workers", "2", "--threads", "4", "--keep-alive", "75",
                 *(["--access-logfile", "-"] if verbose else [])]
            ),
            # The MCP gateway for outside agents (/mcp/<slug>/), its own ASGI process.
            self._spawn(
                [sys.executable, "manage.py", "mcp_gateway", "--host", bind.rsplit(":", 1)[0],
                 "--port", str(mcp_port)]
            ),
        ]  # fmt: skip
        engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        broker = "redis" if settings.REDIS_URL else "filesystem"
        self.stdout.write(
            self.style.SUCCESS(
                f"\nTenure is running at http://{bind}/  (database: {engine}, broker: {broker})"
            )
        )
        host = bind.rsplit(":", 1)[0]
        self.stdout.write(f"MCP gateway for outside agents: http://{host}:{mcp_port}/mcp/<slug>/")
        self.stdout.write(
            "Press Ctrl-C to stop web and workers. TENURE_VERBOSE=1 shows request and task logs.\n"
        )
        stop = {"now": False}

        def request_stop(signum, frame) -> None:
            stop["now"] = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        try:
            while not stop["now"]:
                if any(child.poll() is not None for child in children):
                    self.stderr.write("A process exited; stopping the console.")
                    break
                time.sleep(0.5)
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        # The project's own commands (this interpreter, fixed arguments), no shell.
        return subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env or dict(os.environ))  # noqa: S603
