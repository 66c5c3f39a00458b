"""The faults: their schedule, firing each once during the load, closing any still
open when the load ends, and what the report says about each (errors while it lasted,
time to the first success after it).

One fault at a time: a worker SIGKILLed (and restarted 5 s later), the web's and
workers' PostgreSQL backends terminated, our Redis stopped for 10 s, and the kill
switch: refunds paused over HTTP as ops, then resumed. ``--no-faults`` fires none.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .config import DB_NAME, SLUG, log
from .db import pg, scalar
from .load import CSRF_INPUT_RE, Sample, login
from .processes import OwnRedis, Proc
from .stats import count_by, errors_between, first_ok_after

# The request kinds whose recovery the report times after a fault.
RECOVERY_KINDS = ("queue_page", "decide_next", "dashboard", "ingest_single")


def fault_plan(seconds: float) -> dict[str, float]:
    """When each fault fires, in seconds into the load (meant for 60 s or more)."""
    return {
        "worker_kill": 0.15 * seconds,
        "worker_restart": 0.15 * seconds + 5,
        "pg_terminate": 0.33 * seconds,
        "redis_stop": 0.45 * seconds,
        "redis_start": 0.45 * seconds + 10,
        "pause": max(0.72 * seconds, 0.45 * seconds + 16),
        "resume": max(0.87 * seconds, 0.45 * seconds + 25),
    }


def fault_schedule(seconds: float, *, enabled: bool) -> dict[str, float]:
    """The plan for a run: empty with ``--no-faults``."""
    return fault_plan(seconds) if enabled else {}


def schedule_text(plan: dict[str, float]) -> str:
    """The plan as the log shows it when the load starts."""
    if not plan:
        return "none (--no-faults)"
    return ", ".join(f"{name} at {at:.0f}s" for name, at in plan.items())


def terminate_backends(app_names: tuple[str, ...]) -> int:
    with pg() as conn:
        terminated = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = ANY(%s) AND pid <> pg_backend_pid()",
            [DB_NAME, list(app_names)],
        ).fetchall()
    return len(terminated)


def ops_post(base: str, path: str, form_page: str, reason: str) -> tuple[int, float, float]:
    """POST a pause or resume as otto, with the CSRF token read from the page's form.
    Returns (status, when it was sent, how long it took in ms); status 0 on a failure."""
    import httpx

    t0 = time.time()
    try:
        client = login(base, "otto")
        with contextlib.closing(client):
            page = client.get(form_page)
            token = CSRF_INPUT_RE.search(page.text).group(1)
            t0 = time.time()
            response = client.post(
                path, data={"csrfmiddlewaretoken": token, "reason": reason}, timeout=60
            )
    except (httpx.HTTPError, RuntimeError, AttributeError) as exc:
        log(f"{path}: {type(exc).__name__}: {exc}")
        return 0, t0, round((time.time() - t0) * 1000, 1)
    return response.status_code, t0, round((time.time() - t0) * 1000, 1)


def pause_drill(base: str, pause: dict[str, Any], load_start: float) -> None:
    """Ops presses the kill switch over HTTP; the pause's audit event dates the commit."""
    status, at, took = ops_post(base, f"/w/{SLUG}/pause/", f"/w/{SLUG}/", "Soak: kill switch drill")
    paused_at = scalar(
        "SELECT max(created_at) FROM console_auditevent WHERE action = 'workflow.paused'"
    )
    pause.update(
        status=status,
        request_ms=took,
        at_s=round(at - load_start, 1),
        paused_at=paused_at.isoformat() if paused_at else None,
        post_to_commit_ms=round((paused_at.timestamp() - at) * 1000, 1) if paused_at else None,
    )
    log(f"fault: paused {SLUG} over HTTP ({status}, {took} ms)")


def resume_drill(base: str, pause: dict[str, Any], load_start: float) -> None:
    pause["resume_sent"] = round(time.time() - load_start, 1)
    status, at, took = ops_post(base, f"/w/{SLUG}/resume/", f"/w/{SLUG}/", "Soak: drill over")
    resumed_at = scalar(
        "SELECT max(created_at) FROM console_auditevent WHERE action = 'workflow.resumed'"
    )
    pause.update(
        resume_status=status,
        resume_request_ms=took,
        resumed_at_s=round(at - load_start, 1),
        resumed_at=resumed_at.isoformat() if resumed_at else None,
    )
    log(f"fault: resumed {SLUG} ({status}, {took} ms)")


class Faults:
    """Fires each fault of the plan once, at its time into the load.

    ``faults`` and ``pause`` are what the report shows; keys starting with ``_`` are
    epochs for the results and are taken out by :func:`faults_measured`.
    """

    def __init__(self, *, plan: dict[str, float], base: str, load_start: float,
                 workers: list[Proc], worker_start: Callable[[int], Proc],
                 redis_server: OwnRedis) -> None:  # fmt: skip
        self.plan = plan
        self.base = base
        self.load_start = load_start
        self.workers = workers  # worker 1 (index 0) is the one killed and restarted
        self.worker_start = worker_start
        self.redis_server = redis_server
        self.done: set[str] = set()
        self.faults: dict[str, Any] = {}
        self.pause: dict[str, Any] = {}

    def due(self, name: str, elapsed: float) -> bool:
        return name in self.plan and name not in self.done and elapsed >= self.plan[name]

    def tick(self, elapsed: float) -> bool:
        """Fire what is due. False while the worker kill waits (up to 5 s) for work in
        flight to aim at: the caller asks again at once."""
        if self.due("worker_kill", elapsed):
            running = scalar("SELECT count(*) FROM agents_run WHERE status = 'running'")
            executing = scalar("SELECT count(*) FROM agents_execution WHERE status = 'running'")
            if not (running or executing) and elapsed < self.plan["worker_kill"] + 5:
                time.sleep(0.05)
                return False
            self.done.add("worker_kill")
            self.workers[0].kill(signal.SIGKILL)
            self.faults["worker_kill"] = {
                "at_s": round(elapsed, 1),
                "runs_running_at_kill": running,
                "executions_running_at_kill": executing,
                "signal": "SIGKILL to the worker's process group",
            }
            log(f"fault: SIGKILL worker1 ({running} runs, {executing} executions)")
        if self.due("worker_restart", elapsed):
            self.done.add("worker_restart")
            self.workers[0] = self.worker_start(1)
            self.faults["worker_kill"]["restarted_at_s"] = round(time.time() - self.load_start, 1)
            self.faults["worker_kill"]["_restart_epoch"] = time.time()
        if self.due("pg_terminate", elapsed):
            self.done.add("pg_terminate")
            at = time.time()
            killed = terminate_backends(("soak-web", "soak-worker"))
            self.faults["pg_terminate"] = {
                "at_s": round(at - self.load_start, 1),
                "backends_terminated": killed,
                "_epoch": at,
            }
            log(f"fault: terminated {killed} PostgreSQL backends")
        if self.due("redis_stop", elapsed):
            self.done.add("redis_stop")
            at = time.time()
            self.redis_server.stop()
            self.faults["redis_down"] = {"at_s": round(at - self.load_start, 1), "_epoch": at}
            log("fault: our Redis stopped")
        if self.due("redis_start", elapsed):
            self.done.add("redis_start")
            self.redis_server.start()
            at = time.time()
            self.faults["redis_down"]["restarted_at_s"] = round(at - self.load_start, 1)
            self.faults["redis_down"]["_restart_epoch"] = at
            log("fault: our Redis started again")
        if self.due("pause", elapsed):
            self.done.add("pause")
            threading.Thread(
                target=pause_drill, args=(self.base, self.pause, self.load_start), daemon=True
            ).start()
        if self.due("resume", elapsed) and self.pause.get("paused_at"):
            self.done.add("resume")
            threading.Thread(
                target=resume_drill, args=(self.base, self.pause, self.load_start), daemon=True
            ).start()
        return True

    def close(self) -> None:
        """A fault still open when the clock ran out is closed now, so the checks run on
        a whole system."""
        if not self.redis_server.ping():
            self.redis_server.start()
            self.faults.setdefault("redis_down", {})["restarted_after_load"] = True
        pause = self.pause
        if pause.get("paused_at") and "resume_status" not in pause and "resume_sent" not in pause:
            resume_drill(self.base, pause, self.load_start)
            pause["resumed_after_load"] = True


def faults_measured(faults: dict[str, Any], samples: list[Sample]) -> dict[str, Any]:
    """Each fault with what the clients and workers saw around it (epochs taken out)."""
    for name, f in faults.items():
        if name == "worker_kill" and "_restart_epoch" in f:
            t = f.pop("_restart_epoch")
            f["first_run_finished_after_restart_s"] = _first_run_finished_after(t)
            f["5xx_or_errors_while_down"] = errors_between(samples, t - 5, t + 5)
        if name == "pg_terminate":
            t = f.pop("_epoch")
            f["errors_next_10s"] = errors_between(samples, t, t + 10)
            f["time_to_first_ok_s"] = {
                kind: first_ok_after(samples, t, {kind}) for kind in RECOVERY_KINDS
            }
        if name == "redis_down" and "_epoch" in f:  # not when Redis died on its own
            t = f.pop("_epoch")
            t2 = f.pop("_restart_epoch", None)
            f["errors_while_down"] = errors_between(samples, t, t2 or t + 10)
            if t2:
                f["errors_after_restart_first_10s"] = errors_between(samples, t2, t2 + 10)
                f["errors_after_restart_10s_on"] = errors_between(samples, t2 + 10, 1e12)
                f["time_to_first_ok_after_restart_s"] = {
                    kind: first_ok_after(samples, t2, {kind}) for kind in RECOVERY_KINDS
                }
                f["first_run_finished_after_restart_s"] = _first_run_finished_after(t2)
    return faults


def _first_run_finished_after(epoch: float) -> float | None:
    first = scalar(
        "SELECT EXTRACT(EPOCH FROM min(finished_at)) FROM agents_run WHERE finished_at > %s",
        [datetime.fromtimestamp(epoch, UTC)],
    )
    return round(float(first) - epoch, 2) if first else None


def errors_outside_fault_windows(faults: dict[str, Any], samples: list[Sample],
                                 load_start: float, seconds: float) -> dict[str, Any]:  # fmt: skip
    """5xx and connection errors that no fault explains: Redis down (and 10 s after its
    restart), a terminated backend (3 s). A request in flight when a fault starts may
    fail too: it counts by its end."""
    windows = []
    if "at_s" in faults.get("redis_down", {}):
        a = load_start + faults["redis_down"]["at_s"]
        b = load_start + faults["redis_down"].get("restarted_at_s", seconds) + 10
        windows.append((a, b))
    if "pg_terminate" in faults:
        a = load_start + faults["pg_terminate"]["at_s"]
        windows.append((a, a + 3))
    outside = [
        s
        for s in samples
        if (s.status >= 500 or s.status == 0)
        and not any(a <= s.at + s.ms / 1000 and s.at < b for a, b in windows)
    ]
    return {
        "count": len(outside),
        "by_kind": dict(count_by(f"{s.kind}:{s.status}" for s in outside)),
        "at_s": sorted({round(s.at - load_start) for s in outside})[:40],
    }
