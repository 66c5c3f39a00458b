"""One soak run, phase by phase: snapshot and services, the data, the web and the
workers, an ingest burst alone, the mixed load with its faults, a bounded settle,
then the results, the invariants and the verdict.

Everything started is stopped in the ``finally`` of :func:`run`, by process group,
also on Ctrl-C (and SIGTERM, which the command turns into one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import queries
from .config import INGEST_OFF_SLUG, PY, QUEUE, RESULTS, ROOT, SLUG, log, now_utc, source_use
from .dataset import bulk_load, setup_console
from .db import recreate_database, refunds_id, scalar
from .faults import (
    Faults,
    errors_outside_fault_windows,
    fault_schedule,
    faults_measured,
    schedule_text,
)
from .invariants import check_invariants, violations
from .load import Recorder, ingest_loop, poller_loop, reviewer_loop
from .pii import scan_logs
from .processes import (
    OwnRedis,
    Proc,
    base_env,
    django_setup,
    free_port,
    manage,
    rss_of,
    snapshot_source,
)
from .stats import latency_summary, server_latency


@dataclass
class Data:
    """What the load works on."""

    reviewers: list[str]
    token: str
    floor_pk: int  # the floor view's row, in the middle of the bulk load
    live_start_id: int  # work items from here on arrived during the load


@dataclass
class System:
    """The web and the workers, running."""

    base: str
    web: Proc
    workers: list[Proc]
    out_dir: Path
    log_dir: Path
    procs: list[Proc]  # every process started, restarts included, for the final stop

    def worker_start(self, i: int) -> Proc:
        argv = [PY, "-m", "celery", "-A", "console", "worker", "--loglevel=INFO",
                "--concurrency=2", "--pool=prefork", "-Q", QUEUE, "-n", f"soak-w{i}@%h",
                "--without-gossip", "--without-mingle"]  # fmt: skip
        if i == 2:  # beat (the heartbeat /readyz and /ops read) on the worker never killed
            argv += ["--beat", "--schedule", str(self.out_dir / "celerybeat-schedule")]
        proc = Proc(f"worker{i}", argv, base_env("soak-worker"), self.log_dir / f"worker{i}.log")
        self.procs.append(proc.start())
        return proc


@dataclass
class Load:
    """What happened during the mixed load."""

    rec: Recorder
    start: float  # epoch
    seconds: float
    faults: dict[str, Any]
    pause: dict[str, Any]
    abandoned: list[int]
    loadavg: list[tuple[float, float]] = field(default_factory=list)


def run(opts: argparse.Namespace) -> dict[str, Any]:
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
    try:
        log(f"results in {out_dir}")
        report["source"] = snapshot_source(out_dir / "src")
        source_use(out_dir / "src")
        redis_server.start()
        data = prepare(opts, report, log_dir)
        system = system_start(opts, out_dir, log_dir, procs)
        report["ingest_burst"] = ingest_burst(opts, system.base, data.token)
        log(f"ingest burst: {report['ingest_burst']['items_per_s']} items/s")

        rss: dict[str, Any] = {"start": {p.name: rss_of(p) for p in procs}}
        load = mixed_load(opts, system, data, redis_server, stop, threads, wall_start)
        rss["end_of_load"] = {p.name: rss_of(p) for p in procs if p.alive()}
        stop.set()
        for t in threads:
            t.join(timeout=15)
        log(f"load stopped after {load.seconds:.0f}s; {len(load.rec.samples)} requests")

        report["settle"] = settle(opts, data.live_start_id, load.abandoned, wall_start)
        results(opts, report, data, load, log_dir)
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
    report["measurement_errors"] = queries.errors_of(report["queries_per_request"])
    path = RESULTS / f"soak-{stamp}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    report["_json_path"] = str(path.relative_to(ROOT))
    return report


def prepare(opts: argparse.Namespace, report: dict[str, Any], log_dir: Path) -> Data:
    """A fresh database: migrated, the demo seeded, N proposals bulk-loaded and their
    history rolled up."""
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
    # What the beat's metric-rollup job would have done over those weeks: roll the
    # closed days and today's closed hours up once (the dashboards then read rollups
    # plus the last hour or two).
    from evidence.metrics import metric_days_roll, open_hours_roll

    t_roll = time.monotonic()
    metric_days_roll()
    open_hours_roll()
    report["bulk_load"]["rollup_seconds"] = round(time.monotonic() - t_roll, 1)
    log(f"closed days rolled up in {report['bulk_load']['rollup_seconds']} s")
    return Data(
        reviewers=reviewers,
        token=token,
        floor_pk=report["bulk_load"]["first_item_id"] + opts.proposals // 2,
        live_start_id=scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM agents_workitem"),
    )


def system_start(opts: argparse.Namespace, out_dir: Path, log_dir: Path,
                 procs: list[Proc]) -> System:  # fmt: skip
    """gunicorn and two Celery workers, each in its own process group; back once the
    web answers /healthz and both workers are ready."""
    import httpx

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
    system = System(base=base, web=web, workers=[], out_dir=out_dir, log_dir=log_dir, procs=procs)
    system.workers = [system.worker_start(1), system.worker_start(2)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        time.sleep(0.3)
    else:
        raise RuntimeError("web did not answer /healthz")
    for w in system.workers:
        w.wait_for_log(b"ready.", 90)
    log(f"web on {base}, two workers ready")
    return system


def ingest_burst(opts: argparse.Namespace, base: str, token: str) -> dict[str, Any]:
    """Throughput of batched ingest alone, into a workflow at level off (no runs)."""
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
    return {
        "seconds": round(burst_s, 1),
        "threads": opts.burst_threads,
        "batch": opts.burst_batch,
        "items": burst.ingested[INGEST_OFF_SLUG],
        "items_per_s": round(burst.ingested[INGEST_OFF_SLUG] / burst_s),
        "latency": latency_summary(burst.samples, burst_s),
        "errors": burst.errors[:5],
    }


def load_threads(opts: argparse.Namespace, base: str, data: Data, rec: Recorder,
                 stop: threading.Event, load_start: float,
                 abandoned: list[int]) -> list[threading.Thread]:  # fmt: skip
    """Reviewers (the last walks away holding a claim at 20% of the load), a manager on
    the dashboard, ops on /ops/, two floor pollers, live ingest into refunds and paced
    bulk ingest into the workflow at level off."""
    threads = []
    for i, username in enumerate(data.reviewers):
        abandon_at = load_start + 0.2 * opts.seconds if i == len(data.reviewers) - 1 else None
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
    for _ in range(2):
        threads.append(threading.Thread(
            target=poller_loop,
            args=(base, "rita", "floor", f"/bench/floor/{data.floor_pk}/", rec, stop,
                  opts.think),
            daemon=True,
        ))  # fmt: skip
    # Live ingest into refunds (the agent runs on it): singles and small batches, paced.
    threads.append(threading.Thread(
        target=ingest_loop,
        args=(base, data.token, rec, stop, "live", SLUG, 5, 1.0, 2),
        daemon=True,
    ))  # fmt: skip
    # Bulk ingest alongside (level off: no runs), paced.
    threads.append(threading.Thread(
        target=ingest_loop,
        args=(base, data.token, rec, stop, "side", INGEST_OFF_SLUG, 100, 1.0, 0),
        daemon=True,
    ))  # fmt: skip
    return threads


def mixed_load(opts: argparse.Namespace, system: System, data: Data, redis_server: OwnRedis,
               stop: threading.Event, threads: list[threading.Thread],
               wall_start: float) -> Load:  # fmt: skip
    """Everything at once for ``opts.seconds``, with the faults fired on their schedule
    (none with ``--no-faults``). Open faults are closed before it returns; the load
    threads are still running (``stop`` ends them)."""
    rec = Recorder()
    abandoned: list[int] = []
    load_start = time.time()
    plan = fault_schedule(opts.seconds, enabled=not opts.no_faults)
    faults = Faults(
        plan=plan,
        base=system.base,
        load_start=load_start,
        workers=system.workers,
        worker_start=system.worker_start,
        redis_server=redis_server,
    )
    threads.extend(load_threads(opts, system.base, data, rec, stop, load_start, abandoned))
    for t in threads:
        t.start()
    log(
        f"load running for {opts.seconds}s: {len(data.reviewers)} reviewers; "
        f"faults: {schedule_text(plan)}"
    )
    loadavg: list[tuple[float, float]] = []
    last_load = 0.0
    web_died = False
    while (elapsed := time.time() - load_start) < opts.seconds:
        if time.time() - last_load >= 5:
            loadavg.append((round(elapsed, 1), os.getloadavg()[0]))
            last_load = time.time()
        if not faults.tick(elapsed):
            continue
        if not system.web.alive() and not web_died:
            web_died = True
            faults.faults["web_died_at_s"] = round(elapsed, 1)
            log(f"the web server exited; see {system.web.log_path}")
        if time.monotonic() - wall_start > opts.max_wall:
            log("wall-clock limit reached: stopping the load early")
            break
        time.sleep(0.2)
    seconds = time.time() - load_start
    faults.close()
    return Load(
        rec=rec,
        start=load_start,
        seconds=seconds,
        faults=faults.faults,
        pause=faults.pause,
        abandoned=abandoned,
        loadavg=loadavg,
    )


def settle(opts: argparse.Namespace, live_start_id: int, abandoned: list[int],
           wall_start: float) -> dict[str, Any]:  # fmt: skip
    """Let the pipeline drain (bounded): no live item received, running or executing.
    Also wait out the lease of a claim a reviewer walked away with, so the check sees
    whether it was freed rather than catching it still inside its lease (a short run's
    load can end before that lease does)."""
    settle_start = time.time()
    drained = False
    wf = refunds_id()
    while time.time() - settle_start < opts.settle:
        busy = scalar(
            "SELECT count(*) FROM agents_workitem WHERE id >= %s AND workflow_id = %s AND "
            "status IN ('received', 'running', 'executing')",
            [live_start_id, wf],
        )
        drained = busy == 0
        leased = abandoned and scalar(
            "SELECT count(*) FROM reviews_claim WHERE proposal_id = ANY(%s) AND expires_at > now()",
            [abandoned],
        )
        if drained and not leased:
            break
        if time.monotonic() - wall_start > opts.max_wall:
            break
        time.sleep(2)
    return {"seconds": round(time.time() - settle_start, 1), "drained": drained}


def results(opts: argparse.Namespace, report: dict[str, Any], data: Data, load: Load,
            log_dir: Path) -> None:  # fmt: skip
    """Latency, throughput, the faults' effects, the invariants and queries per request,
    into ``report`` (the system is still running: the checks read it live)."""
    samples = load.rec.samples
    report["load"] = {
        "seconds": round(load.seconds, 1),
        "reviewers": len(data.reviewers),
        "think_s": opts.think,
        "web": f"gunicorn gthread {opts.web_workers} workers x {opts.web_threads} threads",
        "workers": "2 x celery prefork concurrency 2",
        "requests": len(samples),
        "requests_per_s": round(len(samples) / load.seconds, 1),
        "latency": latency_summary(samples, load.seconds),
        "loadavg_1m_during": load.loadavg,
        "ingested": dict(load.rec.ingested),
        "client_errors_sample": load.rec.errors[:15],
    }
    lat = report["load"]["latency"]
    floor_p50 = lat.get("floor", {}).get("p50_ms")
    report["floor_ratio_p50"] = {
        kind: round(v["p50_ms"] / floor_p50, 2)
        for kind, v in lat.items()
        if floor_p50 and "p50_ms" in v and kind != "floor"
    }
    window = (
        datetime.fromtimestamp(load.start, UTC),
        datetime.fromtimestamp(load.start + load.seconds, UTC),
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
        "runs_per_s": round(runs_done / load.seconds, 2),
        "executions_finished": execs_done,
        "executions_per_s": round(execs_done / load.seconds, 2),
    }
    report["faults"] = faults_measured(load.faults, samples)
    report["pause"] = load.pause
    report["errors_outside_fault_windows"] = errors_outside_fault_windows(
        report["faults"], samples, load.start, opts.seconds
    )
    report["server_latency"] = server_latency(
        log_dir / "web.log", load.start, load.start + load.seconds
    )
    report["invariants"] = check_invariants(
        data.live_start_id, load.pause, load.rec, load.abandoned, report["settle"]["drained"]
    )
    report["queries_per_request"] = queries.queries_per_request(data.floor_pk)
