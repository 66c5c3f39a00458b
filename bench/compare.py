"""Side-by-side bench: Tenure's pages against a bare Django page, over real HTTP, in one run.

    .venv/bin/python bench/compare.py [--sizes 1000 1000000] [--requests 100]
        [--reviewers 8] [--reviewer-requests 30] [--pgbouncer] [--out NAME] [--keep-db]

gunicorn (gthread, 2 workers x 4 threads, the production settings plus the floor
view of bench/soak_settings.py) on the bench's own PostgreSQL database
(``tenure_soak_compare``, dropped and re-created, and dropped again at the end unless
``--keep-db``) and its own Redis. Measured, at each
size (proposals bulk-loaded by the soak's COPY loader, half of them pending):

* **1 client**: the floor view (one row by primary key, a trivial template, the same
  middleware), decide-and-next (the card's htmx POST), the queue page, the dashboard,
  a single ingest over the API, and the gate API (``POST
  /api/v1/workflows/<slug>/actions``) when the build has it; ``--requests`` each,
  interleaved (floor, decide, queue, dashboard, ingest, gate, floor, ...) so a change
  in the machine's load touches every kind alike.
* **N reviewers** (``--reviewers``): that many threads, each alternating the floor
  view and decide-and-next (a queue page every tenth), ``--reviewer-requests`` each.

Every latency is also given as a ratio to the floor's, measured in the same phase.
``--pgbouncer`` measures everything a second time with gunicorn connecting through
PgBouncer (transaction mode, prepared statements off) and gives each figure's ratio
to the direct one. Writes ``bench/results/compare-<stamp>.json`` and ``.md`` (or
``--out NAME``.json/.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The soak's modules read their database and Redis port from the environment at import.
os.environ.setdefault("TENURE_SOAK_DB", "tenure_soak_compare")
os.environ.setdefault("TENURE_SOAK_REDIS_PORT", str(_free_port()))

from bench.soak import config as soak_config  # noqa: E402
from bench.soak.load import CLAIM_TOKEN_RE, HX_CSRF_RE, PROPOSAL_RE, login  # noqa: E402

SLUG = soak_config.SLUG
TARGETS = {  # issue: the console within reach of a bare Django page
    ("one_client", "decide_next", "p50"): 2.0,
    ("one_client", "queue_page", "p50"): 3.0,
    ("one_client", "dashboard", "p50"): 10.0,
    ("reviewers", "decide_next", "p95"): 4.0,
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize(samples: dict[str, list[tuple[int, float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, rows in samples.items():
        ok = [ms for status, ms in rows if 200 <= status < 400]
        statuses: dict[str, int] = {}
        for status, _ in rows:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        out[kind] = {"n": len(rows), "status": statuses}
        if ok:
            out[kind].update(
                p50_ms=round(pct(ok, 0.5), 2),
                p95_ms=round(pct(ok, 0.95), 2),
                mean_ms=round(statistics.fmean(ok), 2),
            )
    floor = out.get("floor", {})
    for kind, fig in out.items():
        if kind != "floor" and "p50_ms" in fig and floor.get("p50_ms"):
            fig["x_floor_p50"] = round(fig["p50_ms"] / floor["p50_ms"], 2)
            fig["x_floor_p95"] = round(fig["p95_ms"] / floor["p95_ms"], 2)
    return out


class Reviewer:
    """One logged-in reviewer: the queue page, then decide-and-next through the card's
    htmx form, as the browser does."""

    def __init__(self, base: str, username: str) -> None:
        self.base = base
        self.client = login(base, username)
        self.html = ""
        self.csrf = ""

    def timed(self, method: str, url: str, **kwargs: Any) -> tuple[int, float, Any]:
        import httpx

        t0 = time.perf_counter()
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.HTTPError:
            return 0, (time.perf_counter() - t0) * 1000, None
        return response.status_code, (time.perf_counter() - t0) * 1000, response

    def queue_page(self) -> tuple[int, float]:
        status, ms, response = self.timed("GET", f"/w/{SLUG}/queue/")
        if response is not None and status == 200:
            self.html = response.text
            match = HX_CSRF_RE.search(self.html)
            self.csrf = match.group(1) if match else ""
        return status, ms

    def decide_next(self) -> tuple[int, float] | None:
        if not self.html:
            self.queue_page()
        proposal, claim = PROPOSAL_RE.search(self.html), CLAIM_TOKEN_RE.search(self.html)
        if not proposal or not claim:
            self.html = ""
            return None
        status, ms, response = self.timed(
            "POST",
            f"/w/{SLUG}/queue/{proposal.group(1)}/decide/",
            data={"csrfmiddlewaretoken": self.csrf, "token": claim.group(1), "verdict": "accept"},
            headers={
                "HX-Request": "true",
                "X-CSRFToken": self.csrf,
                "HX-Current-URL": f"{self.base}/w/{SLUG}/queue/",
            },
        )
        self.html = response.text if response is not None and status == 200 else ""
        return status, ms

    def get(self, url: str) -> tuple[int, float]:
        status, ms, _ = self.timed("GET", url)
        return status, ms

    def close(self) -> None:
        self.client.close()


def one_client(base: str, username: str, token: str, floor_pk: int, requests: int,
               gate: bool, tag: str) -> dict[str, Any]:  # fmt: skip
    import httpx

    reviewer = Reviewer(base, username)
    api = httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"})
    samples: dict[str, list[tuple[int, float]]] = {
        k: [] for k in ("floor", "decide_next", "queue_page", "dashboard", "ingest_single")
    }
    if gate:
        samples["gate"] = []

    def ingest(n: int) -> tuple[int, float]:
        body = {"payload": {"text": f"Refund order A-1001, it arrived broken ({tag}-{n})."}}
        t0 = time.perf_counter()
        try:
            r = api.post(f"/api/v1/workflows/{SLUG}/work-items", json=body,
                         headers={"Idempotency-Key": f"compare-{tag}-{n}"})  # fmt: skip
            status = r.status_code
        except httpx.HTTPError:
            status = 0
        return status, (time.perf_counter() - t0) * 1000

    def gate_call(n: int) -> tuple[int, float]:
        body = {"tool": "get_order", "arguments": {"order_number": "A-1001"},
                "idempotency_key": f"compare-gate-{tag}-{n}"}  # fmt: skip
        t0 = time.perf_counter()
        try:
            status = api.post(f"/api/v1/workflows/{SLUG}/actions", json=body).status_code
        except httpx.HTTPError:
            status = 0
        return status, (time.perf_counter() - t0) * 1000

    try:
        for n in range(requests + 10):
            warm = n < 10  # the first rounds warm every path (and are not counted)
            figures = {
                "floor": reviewer.get(f"/bench/floor/{floor_pk}/"),
                "decide_next": reviewer.decide_next(),
                "queue_page": reviewer.queue_page(),
                "dashboard": reviewer.get(f"/w/{SLUG}/dashboard/"),
                "ingest_single": ingest(n),
            }
            if gate and (warm or samples.get("gate") is not None):
                figures["gate"] = gate_call(n)
            if not warm:
                for kind, fig in figures.items():
                    if fig is not None:
                        samples[kind].append(fig)
    finally:
        reviewer.close()
        api.close()
    if gate and all(status in (404, 405) for status, _ in samples["gate"]):
        del samples["gate"]  # the route is not there in this build
    return summarize(samples)


def reviewers_phase(base: str, usernames: list[str], floor_pk: int,
                    requests: int) -> dict[str, Any]:  # fmt: skip
    samples: dict[str, list[tuple[int, float]]] = {"floor": [], "decide_next": [], "queue_page": []}
    lock = threading.Lock()
    reviewers = [Reviewer(base, u) for u in usernames]
    for r in reviewers:  # warm: every reviewer holds a card before the clock starts
        r.queue_page()
    start = threading.Barrier(len(reviewers))

    def loop(r: Reviewer) -> None:
        start.wait()
        for n in range(requests):
            floor = r.get(f"/bench/floor/{floor_pk}/")
            decided = r.decide_next()
            page = r.queue_page() if n % 10 == 9 else None
            with lock:
                samples["floor"].append(floor)
                if decided is not None:
                    samples["decide_next"].append(decided)
                if page is not None:
                    samples["queue_page"].append(page)

    threads = [threading.Thread(target=loop, args=(r,)) for r in reviewers]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0
    for r in reviewers:
        r.close()
    out = summarize(samples)
    out["_seconds"] = round(seconds, 1)
    out["_requests_per_s"] = round(sum(len(v) for v in samples.values()) / seconds, 1)
    return out


def gunicorn_start(env: dict[str, str], log_path: Path) -> tuple[Any, str]:
    import httpx

    from bench.soak.processes import Proc

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    web = Proc(
        "web",
        [sys.executable, "-m", "gunicorn", "console.wsgi:application",
         "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
         "--worker-class", "gthread", "--timeout", "60", "--keep-alive", "75",
         "--no-control-socket"],
        env, log_path,
    ).start()  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return web, base
        if not web.alive():
            break
        time.sleep(0.3)
    web.stop()
    raise RuntimeError(f"gunicorn did not come up; see {log_path}")


def gate_present() -> bool:
    from django.urls import Resolver404, resolve

    try:
        resolve(f"/api/v1/workflows/{SLUG}/actions")
    except Resolver404:
        return False
    return True


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Compare bench: Tenure's pages against the floor view, over HTTP",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        f"Web: {report['web']}  ",
        f"Gate API (`POST /api/v1/workflows/<slug>/actions`): {report.get('gate_api', '-')}",
        "",
        "Latency in ms (client side, keep-alive); `xF` = this figure divided by the floor's "
        "same percentile in the same phase.",
        "",
    ]
    for size, by_db in report["sizes"].items():
        for db, phases in by_db.items():
            if not isinstance(phases, dict) or "one_client" not in phases:
                continue
            lines += [f"## {int(size):,} proposals, {db}", ""]
            for phase, label in (("one_client", "1 client"),
                                 ("reviewers", f"{report['reviewers']} reviewers")):  # fmt: skip
                figs = phases[phase]
                lines += [
                    f"**{label}**"
                    + (
                        f" ({figs['_requests_per_s']} req/s)" if "_requests_per_s" in figs else ""
                    ),  # fmt: skip
                    "",
                    "| request | n | p50 ms | p95 ms | p50 xF | p95 xF | statuses |",
                    "|---|---|---|---|---|---|---|",
                ]
                for kind, fig in figs.items():
                    if kind.startswith("_"):
                        continue
                    lines.append(
                        f"| {kind} | {fig['n']} | {fig.get('p50_ms', '-')} | "
                        f"{fig.get('p95_ms', '-')} | {fig.get('x_floor_p50', '-')} | "
                        f"{fig.get('x_floor_p95', '-')} | {fig['status']} |"
                    )
                lines.append("")
    lines += ["## Targets", "", "| target | figure | met |", "|---|---|---|"]
    for row in report["targets"]:
        lines.append(f"| {row['target']} | {row['figure']} | {'yes' if row['met'] else 'NO'} |")
    lines.append("")
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for size, by_db in report["sizes"].items():
        for db, phases in by_db.items():
            if not isinstance(phases, dict) or "one_client" not in phases:
                continue
            for (phase, kind, q), limit in TARGETS.items():
                fig = phases[phase].get(kind, {}).get(f"x_floor_{q}")
                if fig is not None:
                    rows.append({"target": f"{kind} {q} <= {limit}x floor ({phase}, "
                                 f"{int(size):,}, {db})", "figure": f"{fig}x",
                                 "met": fig <= limit})  # fmt: skip
    sizes = list(report["sizes"])
    if len(sizes) >= 2:
        small, large = report["sizes"][sizes[0]], report["sizes"][sizes[-1]]
        for kind in ("decide_next", "queue_page", "dashboard"):
            a = small.get("direct", {}).get("one_client", {}).get(kind, {}).get("p95_ms")
            b = large.get("direct", {}).get("one_client", {}).get(kind, {}).get("p95_ms")
            if a and b:
                rows.append({"target": f"{kind} p95 at {int(sizes[-1]):,} within 20% of "
                             f"{int(sizes[0]):,} (1 client)", "figure": f"{b / a:.2f}x",
                             "met": b / a <= 1.2})  # fmt: skip
    for size, by_db in report["sizes"].items():
        via = by_db.get("pgbouncer_vs_direct")
        if via:
            for kind, ratio in via.items():
                rows.append({"target": f"{kind} p50/floor through PgBouncer within 15% of "
                             f"direct ({int(size):,})",
                             "figure": f"{ratio}x", "met": ratio <= 1.15})  # fmt: skip
    return rows


def _drop_database() -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(soak_config.PG_ADMIN, autocommit=True) as conn,
    ):
        conn.execute(f'DROP DATABASE IF EXISTS "{soak_config.DB_NAME}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 1_000_000])
    parser.add_argument("--requests", type=int, default=100, help="1 client: per request kind")
    parser.add_argument("--reviewers", type=int, default=8)
    parser.add_argument("--reviewer-requests", type=int, default=30, help="per reviewer")
    parser.add_argument("--pending-share", type=float, default=0.5)
    parser.add_argument("--pgbouncer", action="store_true")
    parser.add_argument("--out", default="")
    parser.add_argument("--keep-db", action="store_true", help="leave the database (GBs at 1M)")
    opts = parser.parse_args()
    sizes = sorted(opts.sizes)
    need = opts.requests + 10 + opts.reviewers * (opts.reviewer_requests + 2)
    need *= 2 if opts.pgbouncer else 1
    if int(sizes[0] * opts.pending_share) < need:
        parser.error(f"{sizes[0]} proposals x {opts.pending_share} pending < {need} decisions")

    from bench.soak.dataset import bulk_load, setup_console
    from bench.soak.db import recreate_database
    from bench.soak.processes import OwnRedis, base_env, django_setup, manage

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_base = Path(opts.out) if opts.out else soak_config.RESULTS / f"compare-{stamp}"
    log_dir = Path(str(out_base) + "-logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": "bench/compare.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start "
        "(shared with other work: compare ratios, measured in the same phase)",
        "web": "gunicorn gthread 2 workers x 4 threads, production settings + the floor view",
        "reviewers": opts.reviewers,
        "sizes": {},
    }
    redis = OwnRedis(log_dir / "redis", log_dir / "redis.log")
    bouncer = None
    loaded = 0
    try:
        redis.start()
        recreate_database()
        soak_config.log(f"migrating {soak_config.DB_NAME}")
        manage(["migrate", "--no-input"], log_dir / "setup.log", 900)
        manage(["seed_demo", "--history", "5"], log_dir / "setup.log", 900)
        django_setup()
        usernames, token = setup_console(opts.reviewers + 1)
        if opts.pgbouncer:
            from bench.pgbouncer import PgBouncer

            bouncer = PgBouncer(upstream="postgres://postgres@127.0.0.1:5432").start()
        gate = gate_present()
        from evidence.metrics import metric_days_roll, open_hours_roll

        for size in sizes:
            soak_config.log(f"bulk-loading to {size:,} proposals")
            t0 = time.monotonic()
            load = bulk_load(size - loaded, opts.pending_share, prefix=f"bulk{size}")
            metric_days_roll()
            open_hours_roll()
            loaded = size
            floor_pk = load["first_item_id"] + load["proposals"] // 2
            by_db: dict[str, Any] = {"load_seconds": round(time.monotonic() - t0, 1)}
            report["sizes"][str(size)] = by_db
            paths = [("direct", soak_config.DATABASE_URL, "5")]
            if bouncer is not None:
                paths.append(("pgbouncer", bouncer.url(soak_config.DB_NAME), ""))
            for db, url, prepare in paths:
                env = {**base_env("compare-web"), "DATABASE_URL": url,
                       "DATABASE_PREPARE_THRESHOLD": prepare, "LOG_LEVEL": "WARNING"}  # fmt: skip
                web, base = gunicorn_start(env, log_dir / f"web-{size}-{db}.log")
                try:
                    soak_config.log(f"{size:,} {db}: 1 client")
                    one = one_client(base, usernames[0], token, floor_pk, opts.requests,
                                     gate, f"{size}-{db}")  # fmt: skip
                    soak_config.log(f"{size:,} {db}: {opts.reviewers} reviewers")
                    many = reviewers_phase(base, usernames[1:], floor_pk, opts.reviewer_requests)
                    by_db[db] = {"one_client": one, "reviewers": many}
                finally:
                    web.stop()
            if "pgbouncer" in by_db:
                direct, via = by_db["direct"]["one_client"], by_db["pgbouncer"]["one_client"]
                # Raw p50s, and (the one to judge on a shared machine, whose load moves
                # between the two phases) each page's ratio to its own phase's floor.
                by_db["pgbouncer_vs_direct_raw"] = {
                    kind: round(via[kind]["p50_ms"] / direct[kind]["p50_ms"], 2)
                    for kind in direct
                    if "p50_ms" in direct[kind] and "p50_ms" in via.get(kind, {})
                }
                by_db["pgbouncer_vs_direct"] = {
                    kind: round(via[kind]["x_floor_p50"] / direct[kind]["x_floor_p50"], 2)
                    for kind in direct
                    if "x_floor_p50" in direct[kind] and "x_floor_p50" in via.get(kind, {})
                }
    finally:
        if bouncer is not None:
            bouncer.stop()
        redis.stop()
        if not opts.keep_db:
            _drop_database()
    report["machine"] += f"; {os.getloadavg()[0]:.2f} at the end"
    measured = any(
        "gate" in phases.get("one_client", {})
        for by_db in report["sizes"].values()
        for phases in by_db.values()
        if isinstance(phases, dict)
    )
    report["gate_api"] = "measured" if measured else "not in this build (answered 404)"
    report["targets"] = targets(report)
    Path(str(out_base) + ".json").write_text(json.dumps(report, indent=2) + "\n")
    Path(str(out_base) + ".md").write_text(markdown(report))
    print(markdown(report))
    print(f"written: {out_base}.json, {out_base}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
