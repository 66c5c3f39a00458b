"""Soak test of the whole system: load, faults, invariants and a performance report.

One command, on this machine, against PostgreSQL on 127.0.0.1:5432 and a Redis
server of its own (started on 127.0.0.1:6390 and stopped by this harness):

    .venv/bin/python bench/soak.py            # 1,000,000 proposals, 120 s of load
    .venv/bin/python bench/soak.py --quick    # 50,000 proposals, 60 s of load

1. recreates the ``tenure_soak`` database, migrates, seeds the demo
   (``seed_demo --history 20``) and bulk-loads N proposals with decisions (COPY);
2. starts gunicorn and two Celery workers as subprocesses (own process groups,
   logs under bench/results/soak-<stamp>/);
3. for a fixed time: API ingest (single and batch), 20 reviewers over HTTP with
   real sessions and CSRF (queue page, decide-and-next under htmx, counts),
   dashboards polled, and a floor view (one row by pk, a trivial template);
4. injects faults: SIGKILL a worker mid-run then restart it; stop Redis for 10 s;
   ``pg_terminate_backend`` the web's and workers' connections; pause a workflow
   over HTTP as ops, then resume it;
5. checks the invariants (nothing lost, no double execution, no double decision,
   no claim held forever, no execution started while paused, 5xx only while a
   dependency is down), measures queries per request in-process, scans the logs
   for the demo's PII, and writes bench/results/soak-<stamp>.json and
   docs/PERFORMANCE.md.

Every loop is bounded in count and time; everything started is stopped in a
``finally`` (process groups), also on Ctrl-C. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from benchdb import reset_sequences  # noqa: E402 - bench/ is on sys.path as the script's folder

sys.path.insert(0, str(ROOT))  # replaced by the snapshot in run()
PY = sys.executable
RESULTS = ROOT / "bench" / "results"
SRC = ROOT  # the source snapshot every process runs from (set in run())
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
DB_NAME = "tenure_soak"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_PORT = 6390
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
QUEUE = "tenure-soak"
PASSWORD = "tenure-demo"
SLUG = "refunds"
INGEST_OFF_SLUG = "soak-ingest"  # level off: ingest throughput without agent runs
CLAIM_LEASE_SECONDS = 20
VISIBILITY_TIMEOUT = 30
TEST_CARDS = ("4111 1111 1111 1111", "5500-0000-0000-0004")

CSRF_INPUT_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
HX_CSRF_RE = re.compile(r'"X-CSRFToken": "([^"]+)"')
PROPOSAL_RE = re.compile(r'data-proposal="(\d+)"')
CLAIM_TOKEN_RE = re.compile(r'name="token" value="([0-9a-f-]{36})"')
# Grouped (4111 1111 1111 1111, 5500-0000-0000-0004) or a bare run of 13-19 digits that
# is not part of a decimal, a hex id or a longer token.
CARD_RE = re.compile(r"(?<![\w.-])(?:\d{4}[ -]){3}\d{1,7}(?![\w.-])|(?<![\w.-])\d{13,19}(?![\w.-])")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def now_utc() -> datetime:
    return datetime.now(UTC)


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- Processes ---------------------------------------------------------------------


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
            cwd=SRC,
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
    """A redis-server on 127.0.0.1:6390 for the soak alone (AOF on, so a clean
    restart keeps the broker's queue, as a production Redis with persistence would)."""

    def __init__(self, workdir: Path, log_path: Path) -> None:
        self.workdir = workdir
        self.log_path = log_path
        self.proc: Proc | None = None

    def start(self) -> None:
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
        """A clean shutdown of OUR server (port 6390 only): it writes its AOF."""
        import redis

        if self.proc is None or not self.proc.alive():
            return
        with contextlib.suppress(redis.RedisError):
            redis.Redis(port=REDIS_PORT, socket_timeout=2).shutdown()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.proc.wait(timeout=10)
        self.proc.stop()


# --- Database ------------------------------------------------------------------------


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def pg() -> Any:
    import psycopg

    return psycopg.connect(f"{DATABASE_URL}?application_name=soak-checker", autocommit=True)


def base_env(app_name: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.soak_settings",
        PYTHONPATH=str(SRC),
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
        TENURE_STRANDED_AFTER_SECONDS="20",
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
            cwd=SRC,
            env=base_env("soak-manage"),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=True,
            start_new_session=True,
        )
    return time.perf_counter() - started


def django_setup() -> None:
    import logging

    os.environ.update(base_env("soak-harness"))
    import django

    django.setup()
    # The harness's own HTTP client would log every request it makes.
    logging.getLogger("httpx").setLevel(logging.WARNING)


# --- Setup inside the harness (after seed_demo) --------------------------------------


@dataclass
class Setup:
    reviewers: list[str]
    token: str
    floor_pk: int
    bulk: dict[str, Any]


def legacy_hash(arguments: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()


def setup_console(n_reviewers: int) -> tuple[list[str], str]:
    """Reviewers with the reviewer role on refunds, refunds' money tools at
    supervised (so approvals execute), an API token and a workflow at level off."""
    from django.contrib.auth import get_user_model

    from governance.api.tokens import api_token_create
    from governance.models import ApiToken, AutonomyLevel, ToolGrant, Workflow
    from governance.permissions import Role, roles_ensure, workflow_grant_role

    roles = roles_ensure()
    refunds = Workflow.objects.get(slug=SLUG)
    users = []
    for i in range(1, n_reviewers + 1):
        user, _ = get_user_model().objects.get_or_create(username=f"soak-r{i:02d}")
        user.set_password(PASSWORD)
        user.save()
        user.groups.add(roles[Role.REVIEWER])
        workflow_grant_role(user=user, workflow=refunds, role=Role.REVIEWER)
        users.append(user.username)
    # A harness shortcut, not the gate: the soak needs real executions to check.
    if refunds.autonomy_level == AutonomyLevel.SHADOW:
        Workflow.objects.filter(pk=refunds.pk).update(autonomy_level=AutonomyLevel.SUPERVISED)
    ToolGrant.objects.filter(workflow=refunds, tool="create_refund").update(
        autonomy_level=AutonomyLevel.SUPERVISED
    )
    off, _ = Workflow.objects.get_or_create(
        slug=INGEST_OFF_SLUG,
        defaults={"name": "Soak ingest (off)", "autonomy_level": AutonomyLevel.OFF},
    )
    _, plain = api_token_create(
        name="soak",
        workflows=[refunds, off],
        verbs=[ApiToken.Verb.WORK_ITEMS_WRITE],
        actor="soak",
        rate_limit_per_minute=10_000_000,
    )
    return users, plain


def bulk_load(n: int, pending_share: float) -> dict[str, Any]:
    """COPY ``n`` refund proposals (one per work item, one run, one step each) into
    refunds: most decided (with Decision rows spread over 28 days), the rest pending.
    Each is a $0.50 refund on a seeded sandbox order, so an approval really executes."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from demo.models import SandboxOrder
    from governance.models import Workflow

    workflow = Workflow.objects.get(slug=SLUG)
    reviewer = get_user_model().objects.get(username="rita")
    orders = list(SandboxOrder.objects.order_by("pk").values_list("number", flat=True)[:500])
    pending = int(n * pending_share)
    decided = n - pending
    now = now_utc()
    started = time.perf_counter()
    connection.ensure_connection()
    raw = connection.connection
    with raw.cursor() as cur:
        cur.execute("SELECT COALESCE(MAX(id), 0) FROM agents_workitem")
        base_item = cur.fetchone()[0] + 1
        cur.execute("SELECT COALESCE(MAX(id), 0) FROM agents_run")
        base_run = cur.fetchone()[0] + 1
        cur.execute("SELECT COALESCE(MAX(id), 0) FROM agents_proposal")
        base_prop = cur.fetchone()[0] + 1
        window = timedelta(days=28).total_seconds()

        def when(i: int) -> datetime:
            if i < decided:  # history, oldest first
                return now - timedelta(seconds=window * (1 - i / max(1, decided)) + 3600)
            return now - timedelta(hours=2) + timedelta(microseconds=i)

        def args_of(i: int) -> dict[str, Any]:
            return {
                "order_number": orders[i % len(orders)],
                "amount": "0.50",
                "reason": "Soak bulk refund: item arrived damaged",
            }

        with cur.copy(
            "COPY agents_workitem (id, workflow_id, external_id, title, payload, source, "
            "source_principal, status, succeeded, created_at, updated_at, resolved_at) FROM STDIN"
        ) as copy:
            for i in range(n):
                at = when(i)
                done = i < decided
                copy.write_row(
                    (base_item + i, workflow.pk, f"bulk-{i}", "Bulk refund request",
                     '{"text": "Please refund order, it arrived damaged.", "channel": "bulk"}',
                     "api", "integration:soak", "resolved" if done else "awaiting_review",
                     (i % 7 != 0) if done else None, at, at,
                     at + timedelta(minutes=3) if done else None)
                )  # fmt: skip
        with cur.copy(
            "COPY agents_run (id, work_item_id, attempt, status, stop_reason, autonomy_level, "
            "model, agent_version, prompt_version, tokens_in, tokens_out, cost_usd, "
            "tool_cost_usd, tool_calls, retries, cache_hits, cache_misses, wall_ms, state, "
            "created_at, started_at, finished_at) FROM STDIN"
        ) as copy:
            for i in range(n):
                at = when(i)
                copy.write_row(
                    (base_run + i, base_item + i, 1, "proposed", "completed", "shadow",
                     "demo-small", "1", "1", 900, 120, "0.000207", "0", 2, 0, 0, 1, 850, "{}",
                     at, at, at + timedelta(seconds=1))
                )  # fmt: skip
        with cur.copy(
            "COPY agents_step (run_id, index, kind, name, input, output, error, is_retry, "
            "cached, model, latency_ms, tokens_in, tokens_out, cost_usd, created_at) FROM STDIN"
        ) as copy:
            for i in range(n):
                copy.write_row(
                    (base_run + i, 1, "model_call", "demo-small", '{"input": "<data>"}',
                     '{"output": "ok"}', "", False, False, "demo-small", 310, 900, 120,
                     "0.000207", when(i))
                )  # fmt: skip
        with cur.copy(
            "COPY agents_proposal (id, run_id, workflow_id, work_item_id, sequence, tool, "
            "arguments, arguments_hash, rationale, citations, risk_class, verdict, verdict_rule, "
            "injection_flags, flagged_injection, autonomy_level, status, auto_executed, "
            "sampled_for_review, priority, created_at, decided_at) FROM STDIN"
        ) as copy:
            for i in range(n):
                at = when(i)
                args = args_of(i)
                done = i < decided
                status = "rejected" if i % 10 == 0 else "edited" if i % 10 == 1 else "accepted"
                copy.write_row(
                    (base_prop + i, base_run + i, workflow.pk, base_item + i, 1, "create_refund",
                     json.dumps(args), legacy_hash(args), "The customer reports damage.", "[]",
                     "money", "needs_approval", "Refunds need approval.", "[]", False,
                     "shadow" if done else "supervised", status if done else "pending", False,
                     False, 0, at, at + timedelta(minutes=3) if done else None)
                )  # fmt: skip
        with cur.copy(
            "COPY reviews_decision (proposal_id, reviewer_id, kind, verdict, final_arguments, "
            "final_arguments_hash, diff, reason, reason_text, autonomy_level, seconds_spent, "
            "created_at) FROM STDIN"
        ) as copy:
            for i in range(decided):
                verdict = "reject" if i % 10 == 0 else "edit" if i % 10 == 1 else "accept"
                args = args_of(i)
                final = {**args, "amount": "0.40"} if verdict == "edit" else {}
                copy.write_row(
                    (base_prop + i, reviewer.pk, "review", verdict, json.dumps(final),
                     legacy_hash(final) if final else "",
                     '{"amount": ["0.50", "0.40"]}' if final else "{}",
                     "wrong_amount" if verdict == "reject" else "", "", "shadow", 20 + i % 60,
                     when(i) + timedelta(minutes=3))
                )  # fmt: skip
        reset_sequences(
            cur,
            ("agents_workitem", "agents_run", "agents_step", "agents_proposal", "reviews_decision"),
        )
    raw.commit()
    load_s = time.perf_counter() - started
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {
        "proposals": n,
        "decided": decided,
        "pending": pending,
        "rows": n * 4 + decided,
        "copy_seconds": round(load_s, 1),
        "proposals_per_s": round(n / load_s),
        "rows_per_s": round((n * 4 + decided) / load_s),
        "analyze_seconds": round(time.perf_counter() - t0, 1),
        "first_item_id": base_item,
    }


# --- Load ----------------------------------------------------------------------------


@dataclass
class Sample:
    at: float  # time.time()
    kind: str
    status: int  # 0: connection error / timeout
    ms: float


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    decided: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)
    ingested: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, status: int, started: float, ms: float) -> None:
        self.samples.append(Sample(started, kind, status, ms))

    def error(self, text: str) -> None:
        with self.lock:
            if len(self.errors) < 200:
                self.errors.append(text[:300])


def timed(rec: Recorder, kind: str, client: Any, method: str, url: str, **kwargs: Any) -> Any:
    import httpx

    started = time.time()
    t0 = time.perf_counter()
    try:
        response = client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        rec.add(kind, 0, started, (time.perf_counter() - t0) * 1000)
        rec.error(f"{kind}: {type(exc).__name__}: {exc}")
        return None
    rec.add(kind, response.status_code, started, (time.perf_counter() - t0) * 1000)
    if response.status_code >= 500:
        rec.error(f"{kind} {response.status_code} at {started:.1f}: {response.text[:160]}")
    return response


LOGIN_LOCK = threading.Semaphore(2)  # password hashing is CPU-bound: log in two at a time


def login(base: str, username: str) -> Any:
    import httpx

    last = ""
    for _attempt in range(3):
        client = httpx.Client(base_url=base, timeout=10, follow_redirects=False)
        try:
            with LOGIN_LOCK:
                page = client.get("/login/", timeout=60)
                token = CSRF_INPUT_RE.search(page.text).group(1)
                response = client.post(
                    "/login/",
                    data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
                    timeout=60,
                )
            if response.status_code == 302:
                return client
            last = f"status {response.status_code}"
        except (httpx.HTTPError, AttributeError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        client.close()
        time.sleep(1)
    raise RuntimeError(f"login as {username} failed: {last}")


def reviewer_loop(base: str, username: str, rec: Recorder, stop: threading.Event,
                  think: float, seed: int, abandon_at: float | None,
                  abandoned: list[int]) -> None:  # fmt: skip
    """A reviewer as the browser drives the queue: the page, then decide-and-next
    through the card's htmx form, a full reload every 10 decisions, counts polled."""
    rng = random.Random(seed)
    try:
        client = login(base, username)
    except Exception as exc:  # noqa: BLE001 - reported, the reviewer sits out
        rec.error(f"{username} login: {exc}")
        return
    queue_url = f"/w/{SLUG}/queue/"
    html = ""
    n = 0
    with contextlib.closing(client):
        while not stop.is_set() and n < 100_000:
            if abandon_at is not None and time.time() >= abandon_at:
                # Walk away holding a claim: someone else must get it once the lease ends.
                if match := PROPOSAL_RE.search(html):
                    abandoned.append(int(match.group(1)))
                return
            if not html or n % 10 == 0:
                response = timed(rec, "queue_page", client, "GET", queue_url)
                if response is None or response.status_code != 200:
                    html = ""
                    stop.wait(1.0)
                    n += 1
                    continue
                html = response.text
                csrf = HX_CSRF_RE.search(html)
                csrf_token = csrf.group(1) if csrf else ""
            if n % 5 == 2:
                timed(rec, "queue_counts", client, "GET", f"/w/{SLUG}/queue/counts/",
                      headers={"HX-Request": "true"})  # fmt: skip
            proposal = PROPOSAL_RE.search(html)
            claim = CLAIM_TOKEN_RE.search(html)
            if not proposal or not claim:
                html = ""
                stop.wait(1.0)
                n += 1
                continue
            stop.wait(think * rng.uniform(0.5, 1.5))
            reject = rng.random() < 0.15
            data = {
                "csrfmiddlewaretoken": csrf_token,
                "token": claim.group(1),
                "verdict": "reject" if reject else "accept",
            }
            if reject:
                data["reason"] = "wrong_amount"
            pid = int(proposal.group(1))
            response = timed(
                rec, "decide_next", client, "POST",
                f"/w/{SLUG}/queue/{pid}/decide/", data=data,
                headers={"HX-Request": "true", "X-CSRFToken": csrf_token,
                         "HX-Current-URL": base + queue_url},
            )  # fmt: skip
            n += 1
            if response is None or response.status_code != 200:
                html = ""
                continue
            if "Recorded:" in response.text:
                with rec.lock:
                    rec.decided[pid] += 1
            html = response.text


def poller_loop(base: str, username: str, kind: str, url: str, rec: Recorder,
                stop: threading.Event, every: float) -> None:  # fmt: skip
    try:
        client = login(base, username)
    except Exception as exc:  # noqa: BLE001 - reported
        rec.error(f"{username} login: {exc}")
        return
    with contextlib.closing(client):
        for _ in range(1_000_000):
            if stop.is_set():
                return
            timed(rec, kind, client, "GET", url)
            stop.wait(every)


def demo_payload(i: int) -> dict[str, Any]:
    """A realistic refund ticket from the demo's catalogue (real customer emails),
    sometimes with a card number: what the log scan must never find."""
    from demo.workflows import _refund_item

    spec = _refund_item(i % 500)
    payload = dict(spec["payload"])
    if i % 3 == 0:
        payload["text"] += f" My card is {TEST_CARDS[i % 2]} if you need it."
    return {"title": spec["title"], "payload": payload}


def ingest_loop(base: str, token: str, rec: Recorder, stop: threading.Event, prefix: str,
                slug: str, batch: int, every: float, single_every: int) -> None:  # fmt: skip
    """Batches (and every ``single_every``-th request, a single item) over the API."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    n = 0
    with httpx.Client(base_url=base, timeout=30, headers=headers) as client:
        for request_no in range(1_000_000):
            if stop.is_set():
                return
            if single_every and request_no % single_every == 0:
                body = demo_payload(n)
                response = timed(
                    rec, "ingest_single", client, "POST", f"/api/v1/workflows/{slug}/work-items",
                    json=body, headers={"Idempotency-Key": f"{prefix}-{n}"},
                )  # fmt: skip
                if response is not None and response.status_code in (200, 201):
                    with rec.lock:
                        rec.ingested[slug] += 1
                n += 1
            else:
                items = [{"external_id": f"{prefix}-{n + k}", **demo_payload(n + k)}
                         for k in range(batch)]  # fmt: skip
                response = timed(
                    rec, f"ingest_batch_{batch}", client, "POST",
                    f"/api/v1/workflows/{slug}/work-items/batch", json={"items": items},
                )  # fmt: skip
                if response is not None and response.status_code in (200, 201):
                    with rec.lock:
                        rec.ingested[slug] += batch
                n += batch
            if every:
                stop.wait(every)


# --- Statistics ----------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_summary(samples: list[Sample], seconds: float) -> dict[str, Any]:
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_kind[s.kind].append(s)
    out = {}
    for kind, rows in sorted(by_kind.items()):
        ok = [s.ms for s in rows if 200 <= s.status < 400]
        out[kind] = {
            "n": len(rows),
            "ok": len(ok),
            "status": dict(sorted(_count(str(s.status) for s in rows).items())),
            "per_s": round(len(rows) / seconds, 1),
            **(
                {
                    "p50_ms": round(pct(ok, 0.50), 1),
                    "p95_ms": round(pct(ok, 0.95), 1),
                    "p99_ms": round(pct(ok, 0.99), 1),
                    "mean_ms": round(statistics.fmean(ok), 1),
                }
                if ok
                else {}
            ),
        }
    return out


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[v] += 1
    return out


# --- Faults ----------------------------------------------------------------------------


def terminate_backends(app_names: tuple[str, ...]) -> int:
    with pg() as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = ANY(%s) AND pid <> pg_backend_pid()",
            [DB_NAME, list(app_names)],
        ).fetchall()
    return len(rows)


def scalar(sql: str, params: list[Any] | None = None) -> Any:
    with pg() as conn:
        row = conn.execute(sql, params or []).fetchone()
    return row[0] if row else None


def rows(sql: str, params: list[Any] | None = None) -> list[tuple]:
    with pg() as conn:
        return conn.execute(sql, params or []).fetchall()


def first_ok_after(samples: list[Sample], t: float, kinds: set[str] | None = None) -> float | None:
    ok = [
        s.at + s.ms / 1000
        for s in samples
        if s.at >= t and 200 <= s.status < 400 and (kinds is None or s.kind in kinds)
    ]
    return round(min(ok) - t, 2) if ok else None


def errors_between(samples: list[Sample], start: float, end: float) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for s in samples:
        if start <= s.at < end and (s.status >= 500 or s.status == 0):
            out[f"{s.kind}:{s.status}"] += 1
    return dict(out)


def refunds_id() -> int:
    return scalar("SELECT id FROM console_workflow WHERE slug = %s", [SLUG])


# --- In-process queries per request -------------------------------------------------


def queries_per_request(floor_pk: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    users = get_user_model().objects.in_bulk(["soak-r01", "mona", "otto"], field_name="username")
    out: dict[str, Any] = {}

    def measure(name: str, client: Client, call: Any, times: int = 3) -> None:
        counts, statuses = [], []
        try:
            for _ in range(times):
                with CaptureQueriesContext(connection) as ctx:
                    response = call(client)
                counts.append(len(ctx))
                statuses.append(response.status_code)
        except Exception as exc:  # noqa: BLE001 - reported; the other requests still count
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            return
        out[name] = {"queries": counts, "status": statuses}

    reviewer = Client(HTTP_HOST="127.0.0.1")
    reviewer.force_login(users["soak-r01"])
    measure("floor", reviewer, lambda c: c.get(f"/bench/floor/{floor_pk}/"))
    measure("queue_page", reviewer, lambda c: c.get(f"/w/{SLUG}/queue/"))
    measure(
        "queue_counts",
        reviewer,
        lambda c: c.get(f"/w/{SLUG}/queue/counts/", HTTP_HX_REQUEST="true"),
    )

    def decide(c: Client) -> Any:
        html = c.get(f"/w/{SLUG}/queue/").content.decode()
        pid = PROPOSAL_RE.search(html).group(1)
        token = CLAIM_TOKEN_RE.search(html).group(1)
        with CaptureQueriesContext(connection) as ctx:
            response = c.post(
                f"/w/{SLUG}/queue/{pid}/decide/",
                {"verdict": "accept", "token": token},
                HTTP_HX_REQUEST="true",
            )
        decide.counts.append(len(ctx))
        return response

    decide.counts = []
    measure("decide_next_with_reload", reviewer, decide)
    out["decide_next"] = {"queries": decide.counts, **out.pop("decide_next_with_reload")}
    out["decide_next"]["queries"] = decide.counts
    from governance.api.tokens import api_token_create
    from governance.models import ApiToken, Workflow

    _, plain = api_token_create(
        name="soak-queries",
        workflows=[Workflow.objects.get(slug=INGEST_OFF_SLUG)],
        verbs=[ApiToken.Verb.WORK_ITEMS_WRITE],
        actor="soak",
        rate_limit_per_minute=10_000,
    )
    api = Client(HTTP_HOST="127.0.0.1", headers={"Authorization": f"Bearer {plain}"})
    url = f"/api/v1/workflows/{INGEST_OFF_SLUG}/work-items"
    seq = iter(range(1_000_000))
    measure(
        "ingest_single",
        api,
        lambda c: c.post(
            url, {"external_id": f"q-{next(seq)}", **demo_payload(1)},
            content_type="application/json",
        ),
    )  # fmt: skip
    measure(
        "ingest_batch_10",
        api,
        lambda c: c.post(
            url + "/batch",
            {"items": [{"external_id": f"qb-{next(seq)}", **demo_payload(k)} for k in range(10)]},
            content_type="application/json",
        ),
    )
    manager = Client(HTTP_HOST="127.0.0.1")
    manager.force_login(users["mona"])
    measure("dashboard", manager, lambda c: c.get(f"/w/{SLUG}/dashboard/"))
    ops = Client(HTTP_HOST="127.0.0.1")
    ops.force_login(users["otto"])
    measure("ops", ops, lambda c: c.get("/ops/"))
    return out


# --- Server-side latency, from the web's request log ---------------------------------------

SERVER_KINDS = (
    (re.compile(r"^POST /w/[\w-]+/queue/\d+/decide/$"), "decide_next"),
    (re.compile(r"^GET /w/[\w-]+/queue/counts/$"), "queue_counts"),
    (re.compile(r"^GET /w/[\w-]+/queue/$"), "queue_page"),
    (re.compile(r"^GET /w/[\w-]+/dashboard/$"), "dashboard"),
    (re.compile(r"^GET /ops/$"), "ops"),
    (re.compile(r"^GET /bench/floor/\d+/$"), "floor"),
    (re.compile(r"^POST /api/v1/workflows/[\w-]+/work-items/batch$"), "ingest_batch"),
    (re.compile(r"^POST /api/v1/workflows/[\w-]+/work-items$"), "ingest_single"),
)


def server_latency(web_log: Path, start: float, end: float) -> dict[str, Any]:
    """p50/p95/p99 of ``duration_ms`` as the web logged it (tenure.request), in the load
    window: the server's time without the load generator's own queueing."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    with open(web_log, errors="replace") as fh:
        for line in fh:
            if '"tenure.request"' not in line:
                continue
            try:
                record = json.loads(line)
                at = datetime.fromisoformat(record["timestamp"]).timestamp()
            except (ValueError, KeyError):
                continue
            if not start <= at <= end or record.get("status", 500) >= 400:
                continue
            key = f"{record.get('method')} {record.get('path')}"
            for pattern, kind in SERVER_KINDS:
                if pattern.match(key):
                    by_kind[kind].append(float(record.get("duration_ms", 0)))
                    break
    return {
        kind: {
            "n": len(v),
            "p50_ms": round(pct(v, 0.5), 1),
            "p95_ms": round(pct(v, 0.95), 1),
            "p99_ms": round(pct(v, 0.99), 1),
        }
        for kind, v in sorted(by_kind.items())
    }


# --- Log scan -----------------------------------------------------------------------


def luhn(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def seeded_emails() -> set[str]:
    from demo.workflows import HISTORY_OFFSET, _contact_spec, _order_spec, _username

    emails = {_order_spec(i)["customer_email"] for i in range(HISTORY_OFFSET + 200)}
    emails |= {f"{_username(i)}@corp.example" for i in range(30)}
    for i in range(HISTORY_OFFSET + 200):
        emails |= {e.lower() for e in _contact_spec(i)["emails"]}
    return emails


def mask(value: str) -> str:
    return value[:2] + "…" + value[-2:] if len(value) > 4 else "…"


def scan_logs(log_dir: Path) -> dict[str, Any]:
    emails = seeded_emails()
    report: dict[str, Any] = {"files": {}, "emails_known": len(emails)}
    for path in sorted(log_dir.glob("*.log")):
        found_emails: dict[str, int] = defaultdict(int)
        cards: dict[str, int] = defaultdict(int)
        lines = 0
        with open(path, errors="replace") as fh:
            for line in fh:
                lines += 1
                for email in EMAIL_RE.findall(line):
                    if email.lower() in emails:
                        found_emails[email.lower()] += 1
                for match in CARD_RE.findall(line):
                    digits = re.sub(r"\D", "", match)
                    if 13 <= len(digits) <= 19 and luhn(digits):
                        cards[digits] += 1
        report["files"][path.name] = {
            "lines": lines,
            "seeded_emails": sum(found_emails.values()),
            "distinct_emails": len(found_emails),
            "card_numbers": sum(cards.values()),
            "examples": sorted({mask(e) for e in found_emails} | {mask(c) for c in cards})[:5],
        }
    report["pii_found"] = any(
        f["seeded_emails"] or f["card_numbers"] for f in report["files"].values()
    )
    return report


# --- Invariants ------------------------------------------------------------------------


def broker_work_item_ids() -> set[int]:
    """Work item ids in run_agent messages still in our broker (queued or unacked)."""
    import base64

    import redis

    ids: set[int] = set()
    try:
        r = redis.Redis(port=REDIS_PORT, socket_timeout=5)
        raw = list(r.lrange(QUEUE, 0, 200_000)) + list(r.hvals("unacked"))
    except redis.RedisError:
        return ids
    for entry in raw:
        try:
            message = json.loads(entry)
            if isinstance(message, list):  # unacked: [message, exchange, routing_key]
                message = message[0]
            if message.get("headers", {}).get("task") != "agents.run_agent":
                continue
            body = json.loads(base64.b64decode(message["body"]))
            ids.add(int(body[0][0]))
        except (ValueError, KeyError, IndexError, TypeError):
            continue
    return ids


def check_invariants(start_id: int, pause: dict[str, Any], rec: Recorder,
                     abandoned: list[int], settled: bool) -> dict[str, Any]:  # fmt: skip
    wf = refunds_id()
    out: dict[str, Any] = {}
    status = dict(rows(
        "SELECT status, count(*) FROM agents_workitem WHERE id >= %s AND workflow_id = %s "
        "GROUP BY status", [start_id, wf],
    ))  # fmt: skip
    out["live_items_by_status"] = status
    in_pipeline = [r[0] for r in rows(
        "SELECT id FROM agents_workitem WHERE id >= %s AND workflow_id = %s "
        "AND status IN ('received', 'running')", [start_id, wf],
    )]  # fmt: skip
    queued = broker_work_item_ids()
    stale_running = scalar(
        "SELECT count(*) FROM agents_run r JOIN agents_workitem w ON w.id = r.work_item_id "
        "WHERE w.workflow_id = %s AND r.status = 'running' "
        "AND r.started_at < now() - interval '150 seconds'",
        [wf],
    )
    lost = [i for i in in_pipeline if i not in queued]
    out["lost_items"] = {
        "in_pipeline": len(in_pipeline),
        "with_a_broker_message": len(in_pipeline) - len(lost),
        "without_a_broker_message": len(lost),
        "example_ids": lost[:10],
        "runs_running_over_150s": stale_running,
    }
    stuck_exec = scalar(
        "SELECT count(*) FROM agents_workitem w WHERE w.workflow_id = %s "
        "AND w.status = 'executing' AND w.updated_at < now() - interval '120 seconds'",
        [wf],
    )
    out["executing_items_idle_over_120s"] = stuck_exec
    out["executions"] = dict(rows("SELECT status, count(*) FROM agents_execution GROUP BY 1"))
    out["double_execution"] = {
        "duplicate_keys": scalar(
            "SELECT count(*) FROM (SELECT idempotency_key FROM agents_execution "
            "GROUP BY 1 HAVING count(*) > 1) d"
        ),
        "proposals_with_more_than_one_success": scalar(
            "SELECT count(*) FROM (SELECT proposal_id FROM agents_execution "
            "WHERE status = 'succeeded' GROUP BY 1 HAVING count(*) > 1) d"
        ),
        "refund_executions_without_one_sandbox_refund": scalar(
            "SELECT count(*) FROM agents_execution e JOIN agents_proposal p ON p.id = "
            "e.proposal_id WHERE p.tool = 'create_refund' AND e.status = 'succeeded' AND "
            "(SELECT count(*) FROM agents_sandboxrefund s WHERE s.idempotency_key = "
            "e.idempotency_key) <> 1"
        ),
        "sandbox_refunds_without_an_execution": scalar(
            "SELECT count(*) FROM agents_sandboxrefund s WHERE NOT EXISTS (SELECT 1 FROM "
            "agents_execution e WHERE e.idempotency_key = s.idempotency_key)"
        ),
        "orders_whose_refunded_total_disagrees": scalar(
            "SELECT count(*) FROM agents_sandboxorder o WHERE o.refunded <> COALESCE((SELECT "
            "sum(amount) FROM agents_sandboxrefund s WHERE s.order_id = o.id), 0)"
        ),
        "executions_of_decisions_made_in_shadow_mode": scalar(
            "SELECT count(*) FROM agents_execution e JOIN reviews_decision d ON "
            "d.proposal_id = e.proposal_id WHERE d.autonomy_level = 'shadow'"
        ),
        "sandbox_refunds": scalar("SELECT count(*) FROM agents_sandboxrefund"),
        "sandbox_messages": scalar("SELECT count(*) FROM agents_sandboxmessage"),
    }
    double_http = {pid: n for pid, n in rec.decided.items() if n > 1}
    out["double_decision"] = {
        "proposals_recorded_twice_over_http": len(double_http),
        "decision_audit_events_twice": scalar(
            "SELECT count(*) FROM (SELECT object_id FROM console_auditevent WHERE action IN "
            "('proposal.accept', 'proposal.edit', 'proposal.reject') AND workflow_id = %s "
            "GROUP BY object_id HAVING count(*) > 1) d",
            [wf],
        ),
        "decided_over_http": len(rec.decided),
    }
    claims = {}
    for pid in abandoned:
        row = rows(
            "SELECT p.status, d.reviewer_id, c.reviewer_id, c.expires_at < now() FROM "
            "agents_proposal p LEFT JOIN reviews_decision d ON d.proposal_id = p.id "
            "LEFT JOIN reviews_claim c ON c.proposal_id = p.id WHERE p.id = %s",
            [pid],
        )
        claims[pid] = row[0] if row else None
    out["abandoned_claims"] = {
        "abandoned": len(abandoned),
        "taken_over_and_decided": sum(
            1 for v in claims.values() if v and v[0] != "pending" and v[1] is not None
        ),
        "detail": {str(k): [str(x) for x in v] if v else None for k, v in claims.items()},
    }
    # A lease that outlives its length, or an abandoned claim still blocking its
    # proposal after the settle (longer than a lease), is a claim held forever.
    out["claims_held_beyond_their_lease"] = scalar(
        "SELECT count(*) FROM reviews_claim WHERE expires_at > now() + %s * interval '1 second'",
        [CLAIM_LEASE_SECONDS + 5],
    ) + sum(1 for v in claims.values() if v and v[0] == "pending" and v[3] is False)
    # Expired leases on pending proposals are free for the next reviewer (reported only).
    out["expired_claims_on_pending"] = scalar(
        "SELECT count(*) FROM reviews_claim c JOIN agents_proposal p ON p.id = c.proposal_id "
        "WHERE p.status = 'pending' AND c.expires_at < now()"
    )
    if pause.get("paused_at"):
        end = pause.get("resumed_at") or now_utc().isoformat()
        out["pause"] = {
            "executions_started_while_paused": scalar(
                "SELECT count(*) FROM agents_execution e JOIN agents_proposal p ON p.id = "
                "e.proposal_id WHERE p.workflow_id = %s AND e.started_at > %s "
                "AND e.started_at < %s",
                [wf, pause["paused_at"], end],
            ),
            "model_or_tool_steps_recorded_while_paused": scalar(
                "SELECT count(*) FROM agents_step s JOIN agents_run r ON r.id = s.run_id JOIN "
                "agents_workitem w ON w.id = r.work_item_id WHERE w.workflow_id = %s AND "
                "s.kind IN ('model_call', 'tool_call') AND s.created_at > %s "
                "AND s.created_at < %s",
                [wf, pause["paused_at"], end],
            ),
            "last_execution_start_after_pause_s": scalar(
                "SELECT EXTRACT(EPOCH FROM max(e.started_at) - %s::timestamptz) FROM "
                "agents_execution e JOIN agents_proposal p ON p.id = e.proposal_id WHERE "
                "p.workflow_id = %s AND e.started_at < %s",
                [pause["paused_at"], wf, end],
            ),
            "last_model_or_tool_step_after_pause_s": scalar(
                "SELECT EXTRACT(EPOCH FROM max(s.created_at) - %s::timestamptz) FROM agents_step "
                "s JOIN agents_run r ON r.id = s.run_id JOIN agents_workitem w ON w.id = "
                "r.work_item_id WHERE w.workflow_id = %s AND s.kind IN ('model_call', "
                "'tool_call') AND s.created_at < %s",
                [pause["paused_at"], wf, end],
            ),
            "sandbox_refunds_created_while_paused": scalar(
                "SELECT count(*) FROM agents_sandboxrefund WHERE created_at > %s "
                "AND created_at < %s",
                [pause["paused_at"], end],
            ),
            "runs_escalated_paused": scalar(
                "SELECT count(*) FROM agents_run r JOIN agents_workitem w ON w.id = "
                "r.work_item_id WHERE w.workflow_id = %s AND r.stop_reason = 'paused'",
                [wf],
            ),
        }
        for key in ("last_execution_start_after_pause_s", "last_model_or_tool_step_after_pause_s"):
            if out["pause"][key] is not None:
                out["pause"][key] = round(float(out["pause"][key]), 3)
    out["settled"] = settled
    return out


# --- The run --------------------------------------------------------------------------


def fault_plan(seconds: float) -> dict[str, float]:
    """One fault at a time, in this order (meant for 60 s or more of load)."""
    return {
        "worker_kill": 0.15 * seconds,
        "worker_restart": 0.15 * seconds + 5,
        "pg_terminate": 0.33 * seconds,
        "redis_stop": 0.45 * seconds,
        "redis_start": 0.45 * seconds + 10,
        "pause": max(0.72 * seconds, 0.45 * seconds + 16),
        "resume": max(0.87 * seconds, 0.45 * seconds + 25),
    }


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


def run(opts: argparse.Namespace) -> dict[str, Any]:  # noqa: C901, PLR0915 - one script
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = RESULTS / f"soak-{stamp}"
    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    wall_start = time.monotonic()
    report: dict[str, Any] = {
        "started_at": now_utc().isoformat(),
        "options": vars(opts),
        "machine": {
            "nproc": os.cpu_count(),
            "loadavg_before": os.getloadavg(),
            "postgres": None,
            "python": sys.version.split()[0],
        },
    }
    procs: list[Proc] = []
    redis_server = OwnRedis(out_dir / "redis", log_dir / "redis.log")
    stop = threading.Event()
    threads: list[threading.Thread] = []
    global SRC  # noqa: PLW0603 - every process of this run starts from the snapshot
    try:
        log(f"results in {out_dir}")
        report["source"] = snapshot_source(out_dir / "src")
        SRC = out_dir / "src"
        sys.path.insert(0, str(SRC))
        redis_server.start()
        recreate_database()
        report["machine"]["postgres"] = scalar("SHOW server_version")
        report["setup"] = {
            "migrate_s": round(manage(["migrate", "--no-input"], log_dir / "setup.log", 600), 1)
        }
        log("migrated; seeding the demo (seed_demo --history 20)")
        report["setup"]["seed_demo_s"] = round(
            manage(["seed_demo", "--history", "20"], log_dir / "setup.log", 900), 1
        )
        django_setup()
        reviewers, token = setup_console(opts.reviewers)
        log(f"bulk-loading {opts.proposals:,} proposals (COPY)")
        report["bulk_load"] = bulk_load(opts.proposals, opts.pending_share)
        log(f"bulk load: {report['bulk_load']}")
        # What the beat's metric-rollup job would have done over those weeks: roll
        # the closed days and today's closed hours up once (the dashboards then read
        # rollups plus the last hour or two).
        from evidence.metrics import metric_days_roll, open_hours_roll

        t_roll = time.monotonic()
        metric_days_roll()
        open_hours_roll()
        report["bulk_load"]["rollup_seconds"] = round(time.monotonic() - t_roll, 1)
        log(f"closed days rolled up in {report['bulk_load']['rollup_seconds']} s")
        floor_pk = report["bulk_load"]["first_item_id"] + opts.proposals // 2
        live_start_id = scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM agents_workitem")

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        web = Proc(
            "web",
            [PY, "-m", "gunicorn", "console.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", str(opts.web_workers), "--threads", str(opts.web_threads),
             "--worker-class", "gthread", "--timeout", "60", "--graceful-timeout", "10",
             # Idle keep-alive connections outlive a reviewer's think time: gunicorn's
             # 2 s default closed them just as the next request went out (a reset).
             "--keep-alive", "75",
             # The default control socket is shared per user: another gunicorn on this
             # machine could reach (and stop) ours through it.
             "--no-control-socket"],
            base_env("soak-web"),
            log_dir / "web.log",
        )  # fmt: skip
        procs.append(web.start())

        def worker(i: int) -> Proc:
            argv = [PY, "-m", "celery", "-A", "console", "worker", "--loglevel=INFO",
                    "--concurrency=2", "--pool=prefork", "-Q", QUEUE, "-n", f"soak-w{i}@%h",
                    "--without-gossip", "--without-mingle"]  # fmt: skip
            if i == 2:  # beat (the heartbeat /readyz and /ops read) on the worker never killed
                argv += ["--beat", "--schedule", str(out_dir / "celerybeat-schedule")]
            return Proc(f"worker{i}", argv, base_env("soak-worker"), log_dir / f"worker{i}.log")

        workers = [worker(1).start(), worker(2).start()]
        procs.extend(workers)
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        else:
            raise RuntimeError("web did not answer /healthz")
        for w in workers:
            w.wait_for_log(b"ready.", 90)
        log(f"web on {base}, two workers ready")

        rec = Recorder()
        # --- Ingest burst: throughput of batched ingest alone (workflow at level off) ---
        burst = Recorder()
        burst_stop = threading.Event()
        burst_threads = [
            threading.Thread(
                target=ingest_loop,
                args=(
                    base,
                    token,
                    burst,
                    burst_stop,
                    f"burst{t}",
                    INGEST_OFF_SLUG,
                    opts.burst_batch,
                    0,
                    0,
                ),
                daemon=True,
            )  # fmt: skip
            for t in range(opts.burst_threads)
        ]
        t0 = time.perf_counter()
        for t in burst_threads:
            t.start()
        burst_stop.wait(opts.burst_seconds)
        burst_stop.set()
        for t in burst_threads:
            t.join(timeout=40)
        burst_s = time.perf_counter() - t0
        report["ingest_burst"] = {
            "seconds": round(burst_s, 1),
            "threads": opts.burst_threads,
            "batch": opts.burst_batch,
            "items": burst.ingested[INGEST_OFF_SLUG],
            "items_per_s": round(burst.ingested[INGEST_OFF_SLUG] / burst_s),
            "latency": latency_summary(burst.samples, burst_s),
            "errors": burst.errors[:5],
        }
        log(f"ingest burst: {report['ingest_burst']['items_per_s']} items/s")

        # --- The mixed load with faults ------------------------------------------------
        abandoned: list[int] = []
        load_start = time.time()
        plan = fault_plan(opts.seconds)
        for i, username in enumerate(reviewers):
            abandon_at = load_start + 0.2 * opts.seconds if i == len(reviewers) - 1 else None
            threads.append(threading.Thread(
                target=reviewer_loop,
                args=(base, username, rec, stop, opts.think, i, abandon_at, abandoned),
                daemon=True,
            ))  # fmt: skip
        threads.append(threading.Thread(
            target=poller_loop,
            args=(base, "mona", "dashboard", f"/w/{SLUG}/dashboard/", rec, stop, 1.0),
            daemon=True,
        ))  # fmt: skip
        threads.append(threading.Thread(
            target=poller_loop, args=(base, "otto", "ops", "/ops/", rec, stop, 2.0), daemon=True,
        ))  # fmt: skip
        for k in range(2):
            threads.append(threading.Thread(
                target=poller_loop,
                args=(base, "rita", "floor", f"/bench/floor/{floor_pk}/", rec, stop, opts.think),
                daemon=True,
            ))  # fmt: skip
            del k
        # Live ingest into refunds (the agent runs on it): singles and small batches, paced.
        threads.append(threading.Thread(
            target=ingest_loop,
            args=(base, token, rec, stop, "live", SLUG, 5, 1.0, 2),
            daemon=True,
        ))  # fmt: skip
        # Bulk ingest alongside (level off: no runs), paced.
        threads.append(threading.Thread(
            target=ingest_loop,
            args=(base, token, rec, stop, "side", INGEST_OFF_SLUG, 100, 1.0, 0),
            daemon=True,
        ))  # fmt: skip
        for t in threads:
            t.start()
        log(f"load running for {opts.seconds}s: {len(reviewers)} reviewers, faults {plan}")

        faults: dict[str, Any] = {}
        pause: dict[str, Any] = {}
        loads: list[tuple[float, float]] = []
        rss: dict[str, Any] = {"start": {p.name: rss_of(p) for p in procs}}
        done = set()
        last_load = 0.0
        while (elapsed := time.time() - load_start) < opts.seconds:
            if time.time() - last_load >= 5:
                loads.append((round(elapsed, 1), os.getloadavg()[0]))
                last_load = time.time()
            if not opts.no_faults:
                if "worker_kill" not in done and elapsed >= plan["worker_kill"]:
                    running = scalar("SELECT count(*) FROM agents_run WHERE status = 'running'")
                    executing = scalar(
                        "SELECT count(*) FROM agents_execution WHERE status = 'running'"
                    )
                    # Aim at work in flight: wait (up to 5 s) for a run or an execution.
                    if not (running or executing) and elapsed < plan["worker_kill"] + 5:
                        time.sleep(0.05)
                        continue
                    done.add("worker_kill")
                    workers[0].kill(signal.SIGKILL)
                    faults["worker_kill"] = {
                        "at_s": round(elapsed, 1),
                        "runs_running_at_kill": running,
                        "executions_running_at_kill": executing,
                        "signal": "SIGKILL to the worker's process group",
                    }
                    log(f"fault: SIGKILL worker1 ({running} runs, {executing} executions)")
                if "worker_restart" not in done and elapsed >= plan["worker_restart"]:
                    done.add("worker_restart")
                    workers[0] = worker(1).start()
                    procs.append(workers[0])
                    faults["worker_kill"]["restarted_at_s"] = round(time.time() - load_start, 1)
                    faults["worker_kill"]["_restart_epoch"] = time.time()
                if "pg_terminate" not in done and elapsed >= plan["pg_terminate"]:
                    done.add("pg_terminate")
                    at = time.time()
                    killed = terminate_backends(("soak-web", "soak-worker"))
                    faults["pg_terminate"] = {
                        "at_s": round(at - load_start, 1),
                        "backends_terminated": killed,
                        "_epoch": at,
                    }
                    log(f"fault: terminated {killed} PostgreSQL backends")
                if "redis_stop" not in done and elapsed >= plan["redis_stop"]:
                    done.add("redis_stop")
                    at = time.time()
                    redis_server.stop()
                    faults["redis_down"] = {"at_s": round(at - load_start, 1), "_epoch": at}
                    log("fault: our Redis stopped")
                if "redis_start" not in done and elapsed >= plan["redis_start"]:
                    done.add("redis_start")
                    redis_server.start()
                    at = time.time()
                    faults["redis_down"]["restarted_at_s"] = round(at - load_start, 1)
                    faults["redis_down"]["_restart_epoch"] = at
                    log("fault: our Redis started again")
                if "pause" not in done and elapsed >= plan["pause"]:
                    done.add("pause")
                    threading.Thread(
                        target=pause_drill, args=(base, pause, load_start), daemon=True
                    ).start()
                if "resume" not in done and elapsed >= plan["resume"] and pause.get("paused_at"):
                    done.add("resume")
                    threading.Thread(
                        target=resume_drill, args=(base, pause, load_start), daemon=True
                    ).start()
            if not web.alive() and "web_died_at_s" not in faults:
                faults["web_died_at_s"] = round(elapsed, 1)
                log(f"the web server exited; see {web.log_path}")
            if time.monotonic() - wall_start > opts.max_wall:
                log("wall-clock limit reached: stopping the load early")
                break
            time.sleep(0.2)
        load_seconds = time.time() - load_start
        # A fault still open when the clock ran out is closed now, so the checks run on
        # a whole system.
        if not redis_server.ping():
            redis_server.start()
            faults.setdefault("redis_down", {})["restarted_after_load"] = True
        if pause.get("paused_at") and "resume_status" not in pause and "resume_sent" not in pause:
            resume_drill(base, pause, load_start)
            pause["resumed_after_load"] = True
        rss["end_of_load"] = {p.name: rss_of(p) for p in procs if p.alive()}
        stop.set()
        for t in threads:
            t.join(timeout=15)
        log(f"load stopped after {load_seconds:.0f}s; {len(rec.samples)} requests")

        # --- Settle: let the pipeline drain (bounded) ---------------------------------
        settle_start = time.time()
        settled = False
        wf = refunds_id()
        while time.time() - settle_start < opts.settle:
            busy = scalar(
                "SELECT count(*) FROM agents_workitem WHERE id >= %s AND workflow_id = %s AND "
                "status IN ('received', 'running', 'executing')",
                [live_start_id, wf],
            )
            if busy == 0:
                settled = True
                break
            if time.monotonic() - wall_start > opts.max_wall:
                break
            time.sleep(2)
        report["settle"] = {"seconds": round(time.time() - settle_start, 1), "drained": settled}

        # --- Results ---------------------------------------------------------------
        samples = rec.samples
        report["load"] = {
            "seconds": round(load_seconds, 1),
            "reviewers": len(reviewers),
            "think_s": opts.think,
            "web": f"gunicorn gthread {opts.web_workers} workers x {opts.web_threads} threads",
            "workers": "2 x celery prefork concurrency 2",
            "requests": len(samples),
            "requests_per_s": round(len(samples) / load_seconds, 1),
            "latency": latency_summary(samples, load_seconds),
            "loadavg_1m_during": loads,
            "ingested": dict(rec.ingested),
            "client_errors_sample": rec.errors[:15],
        }
        lat = report["load"]["latency"]
        floor_p50 = lat.get("floor", {}).get("p50_ms")
        report["floor_ratio_p50"] = {
            kind: round(v["p50_ms"] / floor_p50, 2)
            for kind, v in lat.items()
            if floor_p50 and "p50_ms" in v and kind != "floor"
        }
        window = (
            datetime.fromtimestamp(load_start, UTC),
            datetime.fromtimestamp(load_start + load_seconds, UTC),
        )
        runs_done = scalar(
            "SELECT count(*) FROM agents_run WHERE finished_at >= %s AND finished_at < %s", window
        )
        execs_done = scalar(
            "SELECT count(*) FROM agents_execution WHERE finished_at >= %s AND finished_at < %s",
            window,
        )
        report["workers"] = {
            "runs_finished": runs_done,
            "runs_per_s": round(runs_done / load_seconds, 2),
            "executions_finished": execs_done,
            "executions_per_s": round(execs_done / load_seconds, 2),
        }
        for name, f in faults.items():
            if name == "worker_kill" and "_restart_epoch" in f:
                t = f.pop("_restart_epoch")
                first = scalar(
                    "SELECT EXTRACT(EPOCH FROM min(finished_at)) FROM agents_run WHERE "
                    "finished_at > %s",
                    [datetime.fromtimestamp(t, UTC)],
                )
                f["first_run_finished_after_restart_s"] = (
                    round(float(first) - t, 2) if first else None
                )
                f["5xx_or_errors_while_down"] = errors_between(samples, t - 5, t + 5)
            if name == "pg_terminate":
                t = f.pop("_epoch")
                f["errors_next_10s"] = errors_between(samples, t, t + 10)
                f["time_to_first_ok_s"] = {
                    kind: first_ok_after(samples, t, {kind})
                    for kind in ("queue_page", "decide_next", "dashboard", "ingest_single")
                }
            if name == "redis_down":
                t = f.pop("_epoch")
                t2 = f.pop("_restart_epoch", None)
                f["errors_while_down"] = errors_between(samples, t, t2 or t + 10)
                if t2:
                    f["errors_after_restart_first_10s"] = errors_between(samples, t2, t2 + 10)
                    f["errors_after_restart_10s_on"] = errors_between(samples, t2 + 10, 1e12)
                    f["time_to_first_ok_after_restart_s"] = {
                        kind: first_ok_after(samples, t2, {kind})
                        for kind in ("queue_page", "decide_next", "dashboard", "ingest_single")
                    }
                    first = scalar(
                        "SELECT EXTRACT(EPOCH FROM min(finished_at)) FROM agents_run WHERE "
                        "finished_at > %s",
                        [datetime.fromtimestamp(t2, UTC)],
                    )
                    f["first_run_finished_after_restart_s"] = (
                        round(float(first) - t2, 2) if first else None
                    )
        report["faults"] = faults
        report["pause"] = pause
        fault_windows = []
        if "redis_down" in faults:
            a = load_start + faults["redis_down"]["at_s"]
            b = load_start + faults["redis_down"].get("restarted_at_s", opts.seconds) + 10
            fault_windows.append((a, b))
        if "pg_terminate" in faults:
            a = load_start + faults["pg_terminate"]["at_s"]
            fault_windows.append((a, a + 3))
        # A request in flight when a fault starts may fail too: it counts by its end.
        outside = [
            s
            for s in samples
            if (s.status >= 500 or s.status == 0)
            and not any(a <= s.at + s.ms / 1000 and s.at < b for a, b in fault_windows)
        ]
        report["errors_outside_fault_windows"] = {
            "count": len(outside),
            "by_kind": dict(_count(f"{s.kind}:{s.status}" for s in outside)),
            "at_s": sorted({round(s.at - load_start) for s in outside})[:40],
        }
        report["server_latency"] = server_latency(
            log_dir / "web.log", load_start, load_start + load_seconds
        )
        report["invariants"] = check_invariants(live_start_id, pause, rec, abandoned, settled)
        report["queries_per_request"] = queries_per_request(floor_pk)
        rss["after_soak"] = {p.name: rss_of(p) for p in procs if p.alive()}
        report["rss"] = rss
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        for p in reversed(procs):
            p.stop()
        redis_server.stop()
        report["wall_seconds"] = round(time.monotonic() - wall_start, 1)
        report["machine"]["loadavg_after"] = os.getloadavg()
    report["log_scan"] = scan_logs(log_dir)
    report["violations"] = violations(report)
    path = RESULTS / f"soak-{stamp}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    report["_json_path"] = str(path.relative_to(ROOT))
    return report


# --- The verdict ----------------------------------------------------------------------


def violations(report: dict[str, Any]) -> list[str]:
    """Every invariant the run broke, in words; empty when the system held."""
    inv = report.get("invariants") or {}
    found: list[str] = []

    def nonzero(label: str, value: Any) -> None:
        if value:
            found.append(f"{label}: {value}")

    lost = inv.get("lost_items") or {}
    nonzero("work items neither finished nor queued", lost.get("without_a_broker_message"))
    nonzero("runs still running after 150 s", lost.get("runs_running_over_150s"))
    nonzero("executing items idle over 120 s", inv.get("executing_items_idle_over_120s"))
    for key, value in (inv.get("double_execution") or {}).items():
        if key not in ("sandbox_refunds", "sandbox_messages"):
            nonzero(f"double execution ({key.replace('_', ' ')})", value)
    for key, value in (inv.get("double_decision") or {}).items():
        if key != "decided_over_http":
            nonzero(f"double decision ({key.replace('_', ' ')})", value)
    nonzero("claims held beyond their lease", inv.get("claims_held_beyond_their_lease"))
    pause = inv.get("pause") or {}
    nonzero("executions started while paused", pause.get("executions_started_while_paused"))
    nonzero(
        "sandbox refunds created while paused", pause.get("sandbox_refunds_created_while_paused")
    )
    nonzero(
        "model or tool steps recorded while paused",
        pause.get("model_or_tool_steps_recorded_while_paused"),
    )
    nonzero(
        "5xx or connection errors outside the fault windows",
        (report.get("errors_outside_fault_windows") or {}).get("count"),
    )
    if (report.get("log_scan") or {}).get("pii_found"):
        found.append("PII found in the logs")
    return found


# --- The Markdown summary --------------------------------------------------------------

NOTES_MARKER = "<!-- soak:notes (kept by bench/soak.py when it rewrites this file) -->"
TARGETS = {
    "decide_next": ("p95_ms", 15),
    "queue_page": ("p95_ms", 30),
    "dashboard": ("p95_ms", 100),
}


def markdown(report: dict[str, Any], command: str) -> str:
    m = report["machine"]
    lat = report["load"]["latency"]
    lines = [
        "# Performance and soak report",
        "",
        f"Measured {report['started_at'][:19]}Z with `{command}` "
        f"({report['wall_seconds']} s wall). Raw figures: `{report['_json_path']}` "
        "(git-ignored; the harness writes this file).",
        "",
        f"Machine: {m['nproc']} CPUs, PostgreSQL {m['postgres']}, Python {m['python']}; "
        f"load average before {m['loadavg_before'][0]:.2f}, during the load "
        f"{', '.join(f'{v:.2f}' for _, v in report['load']['loadavg_1m_during'])}. "
        "Web, two Celery workers, PostgreSQL, Redis and the load generator share these CPUs.",
        "",
        "## Bulk load",
        "",
        f"{report['bulk_load']['proposals']:,} refund proposals "
        f"({report['bulk_load']['decided']:,} with decisions, "
        f"{report['bulk_load']['pending']:,} pending), each with its work item, run and "
        f"one trace step: {report['bulk_load']['rows']:,} rows by COPY in "
        f"{report['bulk_load']['copy_seconds']} s "
        f"({report['bulk_load']['proposals_per_s']:,} proposals/s, "
        f"{report['bulk_load']['rows_per_s']:,} rows/s), ANALYZE "
        f"{report['bulk_load']['analyze_seconds']} s. Demo seed (`seed_demo --history 20`): "
        f"{report['setup']['seed_demo_s']} s.",
        "",
        "## Latency under load",
        "",
        f"{report['load']['seconds']} s: {report['load']['reviewers']} reviewers over HTTP "
        f"(session + CSRF; think time {report['load']['think_s']} s ±50%), dashboard polled "
        "every 1 s as a manager, /ops/ every 2 s as ops, two floor pollers, live API ingest "
        "into refunds (singles and batches of 5, paced) and batches of 100 into a workflow "
        f"at level off. Web: {report['load']['web']}; {report['load']['workers']}. "
        f"{report['load']['requests']:,} requests ({report['load']['requests_per_s']}/s). "
        "Latency is measured at the client (loopback), successful responses only; "
        "faults were injected during this window (below).",
        "",
        "Client-side columns include the load generator's own queueing (one Python "
        "process, 26 threads, on the same CPUs); server-side columns are the web's own "
        "`duration_ms` (tenure.request log) for the same requests.",
        "",
        "| request | n | client p50 / p95 / p99 ms | server p50 / p95 / p99 ms "
        "| p50 / floor (client, server) | queries | status codes |",
        "|---|---:|---|---|---|---|---|",
    ]
    qpr = report.get("queries_per_request", {})
    server = report.get("server_latency", {})
    floor_server = server.get("floor", {}).get("p50_ms")
    for kind, v in lat.items():
        q = qpr.get(kind, {}).get("queries")
        sk = "ingest_batch" if kind.startswith("ingest_batch") else kind
        sv = server.get(sk, {})
        ratio = report["floor_ratio_p50"].get(kind, 1.0 if kind == "floor" else "-")
        s_ratio = round(sv["p50_ms"] / floor_server, 2) if sv and floor_server else "-"
        lines.append(
            f"| {kind} | {v['n']} | {v.get('p50_ms', '-')} / {v.get('p95_ms', '-')} / "
            f"{v.get('p99_ms', '-')} | {sv.get('p50_ms', '-')} / {sv.get('p95_ms', '-')} / "
            f"{sv.get('p99_ms', '-')} | {ratio}, {s_ratio} | "
            f"{', '.join(map(str, q)) if q else ''} | "
            f"{', '.join(f'{k}: {n}' for k, n in v['status'].items())} |"
        )
    burst = report["ingest_burst"]
    w = report["workers"]
    lines += [
        "",
        "Queries per request were counted in-process (django.test Client under "
        "CaptureQueriesContext, same database, after the load), three times each.",
        "",
        f"Ingest burst (alone, before the mixed load): {burst['threads']} threads posting "
        f"batches of {burst['batch']} for {burst['seconds']} s: **{burst['items_per_s']:,} "
        f"work items/s** ({burst['items']:,} items).",
        "",
        f"Workers: {w['runs_finished']} agent runs finished during the load "
        f"({w['runs_per_s']}/s), {w['executions_finished']} executions "
        f"({w['executions_per_s']}/s).",
        "",
        "Resident memory (MB, VmRSS; main process / largest child / whole tree):",
        "",
        "| process | start | end of load | after soak |",
        "|---|---|---|---|",
    ]
    rss = report["rss"]
    for name in sorted({*rss["start"], *rss.get("after_soak", {})}):

        def cell(stage: str, name: str = name) -> str:
            v = rss.get(stage, {}).get(name)
            if not v or not v.get("alive"):
                return "-"
            return f"{v['main_mb']} / {v['max_child_mb']} / {v['total_mb']}"

        lines.append(f"| {name} | {cell('start')} | {cell('end_of_load')} | {cell('after_soak')} |")
    lines += ["", "## Against the targets", "", "| target | measured | met |", "|---|---|---|"]
    for kind, (key, limit) in TARGETS.items():
        v = lat.get(kind, {}).get(key)
        sv = server.get(kind, {}).get(key)
        met = "yes" if sv is not None and sv <= limit else "no"
        lines.append(
            f"| {kind} {key[:3]} ≤ {limit} ms | client {v}, server {sv} | {met} (server) |"
        )
    for kind in ("decide_next", "queue_page"):
        r = report["floor_ratio_p50"].get(kind)
        sv = server.get(kind, {}).get("p50_ms")
        sr = round(sv / floor_server, 2) if sv and floor_server else None
        met = "yes" if sr is not None and sr <= 3 else "no"
        lines.append(f"| {kind} p50 ≤ 3x floor | client {r}x, server {sr}x | {met} (server) |")
    lines.append(
        f"| ingest ≥ 5,000 items/s batched | {burst['items_per_s']:,} | "
        f"{'yes' if burst['items_per_s'] >= 5000 else 'no'} |"
    )
    web_after = rss.get("after_soak", {}).get("web", {})
    lines.append(
        f"| web worker RSS < 250 MB after the soak | {web_after.get('max_child_mb')} | "
        f"{'yes' if (web_after.get('max_child_mb') or 999) < 250 else 'no'} |"
    )
    inv = report["invariants"]
    lines += [
        "",
        "## Faults and invariants",
        "",
        "```json",
        json.dumps({"faults": report["faults"], "pause": report["pause"]}, indent=1, default=str),
        "```",
        "",
        "Invariants after the load and a bounded settle "
        f"({report['settle']['seconds']} s, drained: {report['settle']['drained']}):",
        "",
        "```json",
        json.dumps(inv, indent=1, default=str),
        "```",
        "",
        f"5xx or connection errors outside the fault windows: "
        f"{report['errors_outside_fault_windows']['count']} "
        f"{report['errors_outside_fault_windows']['by_kind']}.",
        "",
        "**Verdict:** "
        + (
            "every invariant held."
            if not report["violations"]
            else "broken: " + "; ".join(report["violations"]) + "."
        ),
        "",
        "## PII in the soak's logs",
        "",
        f"Scanned for the demo's {report['log_scan']['emails_known']} seeded emails and "
        "Luhn-valid card numbers (the live ingest carried both): "
        f"**{'FOUND' if report['log_scan']['pii_found'] else 'none found'}**.",
        "",
        "| log | lines | seeded emails | card numbers |",
        "|---|---:|---:|---:|",
    ]
    for name, f in report["log_scan"]["files"].items():
        lines.append(f"| {name} | {f['lines']} | {f['seeded_emails']} | {f['card_numbers']} |")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50,000 proposals, 60 s of load")
    parser.add_argument("--proposals", type=int, default=None)
    parser.add_argument("--pending-share", type=float, default=0.2)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--reviewers", type=int, default=20)
    parser.add_argument(
        "--think", type=float, default=2.0, help="reviewer think time per card (s, ±50%%)"
    )
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--burst-seconds", type=float, default=10)
    parser.add_argument("--burst-threads", type=int, default=2)
    parser.add_argument("--burst-batch", type=int, default=500)
    parser.add_argument("--settle", type=float, default=150)
    parser.add_argument("--max-wall", type=float, default=None, help="hard wall-clock cap (s)")
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--no-docs", action="store_true", help="do not write PERFORMANCE.md")
    opts = parser.parse_args()
    opts.proposals = opts.proposals or (50_000 if opts.quick else 1_000_000)
    opts.seconds = opts.seconds or (60 if opts.quick else 120)
    opts.max_wall = opts.max_wall or (600 if opts.quick else 2400)

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    report = run(opts)
    command = f".venv/bin/python bench/soak.py{' --quick' if opts.quick else ''}"
    if opts.proposals not in (50_000, 1_000_000):
        command += f" --proposals {opts.proposals}"
    if not opts.no_docs:
        # Hand-written notes after the marker (findings, gaps) survive a new run.
        doc = ROOT / "docs" / "PERFORMANCE.md"
        old = doc.read_text() if doc.exists() else ""
        notes = old[old.index(NOTES_MARKER) :] if NOTES_MARKER in old else NOTES_MARKER + "\n"
        doc.write_text(markdown(report, command) + "\n" + notes)
    summary = {
        "json": report["_json_path"],
        "latency": report["load"]["latency"],
        "floor_ratio_p50": report["floor_ratio_p50"],
        "ingest_burst_items_per_s": report["ingest_burst"]["items_per_s"],
        "invariants": report["invariants"],
        "pii_found": report["log_scan"]["pii_found"],
        "violations": report["violations"],
    }
    print(json.dumps(summary, indent=2, default=str))
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
