"""Child processes (each in its own process group, logging to a file), the snapshot of
the source they run from, the soak's own Redis, the environment every process gets,
and Django inside the harness itself."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from .config import (
    CLAIM_LEASE_SECONDS,
    DATABASE_URL,
    PASSWORD,
    PY,
    QUEUE,
    REDIS_PORT,
    REDIS_URL,
    RESULTS,
    ROOT,
    STRANDED_AFTER_SECONDS,
    VISIBILITY_TIMEOUT,
    source,
)


class Proc:
    """A child in its own process group, logging to a file; stopped by group."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.proc: subprocess.Popen | None = None
        self.log_file = None

    def start(self) -> Proc:
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=source(),
            env=self.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL, wait: float = 20) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Orphaned children (a prefork pool whose parent died) share the group.
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        self.kill(signal.SIGTERM, wait=20)
        if self.log_file:
            self.log_file.close()
            self.log_file = None

    def wait_for_log(self, needle: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
            if needle in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready in {timeout}s; see {self.log_path}")


SNAPSHOT_IGNORE = (".git", ".venv", "data", "results", "__pycache__", ".pytest_cache",
                   ".ruff_cache", "artifacts", "node_modules")  # fmt: skip


def snapshot_source(dest: Path) -> dict[str, Any]:
    """Copy the working tree (tracked and untracked files) and run everything from the
    copy: others may be editing /work/main while the soak runs."""
    import shutil

    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(*SNAPSHOT_IGNORE))
    info: dict[str, Any] = {"path": str(dest)}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            timeout=10,
        ).stdout.strip()  # fmt: skip
        changed = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
            timeout=10,
        ).stdout.splitlines()  # fmt: skip
        info["uncommitted_files"] = len(changed)
    return info


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree_pids(root: int) -> list[int]:
    """``root`` and its descendants, from /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children[ppid].append(int(entry.name))
    out, todo = [], [root]
    while todo and len(out) < 500:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def rss_of(proc: Proc) -> dict[str, Any]:
    if not proc.alive():
        return {"alive": False}
    pids = tree_pids(proc.pid)
    values = {pid: rss_mb(pid) for pid in pids}
    values = {pid: v for pid, v in values.items() if v is not None}
    return {
        "alive": True,
        "processes": len(values),
        "main_mb": values.get(proc.pid),
        "max_child_mb": max((v for p, v in values.items() if p != proc.pid), default=None),
        "total_mb": round(sum(values.values()), 1),
    }


# --- Redis of our own ----------------------------------------------------------------


class OwnRedis:
    """A redis-server on 127.0.0.1:REDIS_PORT (6390) for the soak alone (AOF on, so a
    clean restart keeps the broker's queue, as a production Redis with persistence
    would). It refuses to start when something already answers on that port: that
    server is not ours, and the Redis fault and the final stop would shut it down."""

    def __init__(self, workdir: Path, log_path: Path) -> None:
        self.workdir = workdir
        self.log_path = log_path
        self.proc: Proc | None = None

    def start(self) -> None:
        if self.ping():
            raise RuntimeError(
                f"something already answers on 127.0.0.1:{REDIS_PORT} (another soak?); set "
                "TENURE_SOAK_REDIS_PORT to another port, or stop it if it is a leftover"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
                "--dir", str(self.workdir), "--save", "", "--appendonly", "yes",
                "--appendfsync", "everysec", "--protected-mode", "yes"]  # fmt: skip
        self.proc = Proc("redis", argv, dict(os.environ), self.log_path).start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.1)
        raise RuntimeError(f"redis-server on {REDIS_PORT} did not start; see {self.log_path}")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=REDIS_PORT, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """A clean shutdown of OUR server (the one this object started): it writes its AOF."""
        import redis

        if self.proc is None or not self.proc.alive():
            return
        with contextlib.suppress(redis.RedisError):
            redis.Redis(port=REDIS_PORT, socket_timeout=2).shutdown()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.proc.wait(timeout=10)
        self.proc.stop()


# --- The environment of every process, and Django in the harness -------------------


def base_env(app_name: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.soak_settings",
        PYTHONPATH=str(source()),
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        CELERY_QUEUE=QUEUE,
        CACHE_KEY_PREFIX="tenure-soak",
        DEBUG="0",
        TENURE_HTTPS="0",
        SECRET_KEY="soak-only-not-a-secret-" + "s" * 40,
        LOG_JSON="1",
        LOG_LEVEL="INFO",
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        TENURE_DATA_DIR=str(RESULTS / "soak-data"),
        TENURE_CLAIM_LEASE_SECONDS=str(CLAIM_LEASE_SECONDS),
        # The sweeper re-sends lost work after this (production: 120 s), so the
        # settle sees a task lost with Redis's restart come back.
        TENURE_STRANDED_AFTER_SECONDS=str(STRANDED_AFTER_SECONDS),
        CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
        OPENAI_API_KEY="",
        OPENAI_BASE_URL="",
        SOAK_APP_NAME=app_name,
        TENURE_DEMO_PASSWORD=PASSWORD,
        # The product's own test hook: a pause between an execution's side effect and
        # its record, so a SIGKILL lands inside an execution, not only between them.
        TENURE_TEST_EXECUTION_DELAY=os.environ.get("SOAK_EXECUTION_DELAY", "0.3"),
    )
    return env


def manage(args: list[str], log_path: Path, timeout: float) -> float:
    started = time.perf_counter()
    with open(log_path, "ab") as out:
        subprocess.run(
            [PY, "manage.py", *args],
            cwd=source(),
            env=base_env("soak-manage"),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=True,
            start_new_session=True,
        )
    return time.perf_counter() - started


def django_setup() -> None:
    """The product's Django inside the harness (the data, the checks, queries per
    request), on the snapshot, with everything it will import later imported now."""
    import logging

    os.environ.update(base_env("soak-harness"))
    import django

    django.setup()
    # The harness's own HTTP client would log every request it makes.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    imports_warm()


def imports_warm() -> None:
    """Import, at the start, what the harness would otherwise import first much later or
    from several threads at once: the load threads' demo catalogue, and the in-process
    client, its authentication backends and the query counter that queries per request
    uses after the load (tens of minutes into a full run). A first import at the very
    end depends on the interpreter's view of the tree and the virtualenv still being
    what it was at the start; a first import from several threads at once can hand one
    of them a half-initialised module."""
    from django.contrib.auth import get_backends
    from django.test import Client  # noqa: F401 - imported for later
    from django.test.utils import CaptureQueriesContext  # noqa: F401 - imported for later

    import demo.workflows  # noqa: F401 - imported for later (demo_payload)

    get_backends()  # imports console.backends and django.contrib.auth.backends
