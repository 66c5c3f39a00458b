"""The Markdown summary of a run, written to docs/PERFORMANCE.md (the hand-written notes
after the marker are kept), and the JSON summary the command prints."""

from __future__ import annotations

import json
from typing import Any

from .config import ROOT

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
        + (
            "no faults were injected (`--no-faults`)."
            if report["options"].get("no_faults")
            else "faults were injected during this window (below)."
        ),
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


def performance_doc_write(report: dict[str, Any], command: str) -> None:
    """Rewrite docs/PERFORMANCE.md; hand-written notes after the marker (findings, gaps)
    survive a new run."""
    doc = ROOT / "docs" / "PERFORMANCE.md"
    old = doc.read_text() if doc.exists() else ""
    notes = old[old.index(NOTES_MARKER) :] if NOTES_MARKER in old else NOTES_MARKER + "\n"
    doc.write_text(markdown(report, command) + "\n" + notes)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the command prints (and tests/soak reads): the verdict and its evidence."""
    return {
        "json": report["_json_path"],
        "latency": report["load"]["latency"],
        "floor_ratio_p50": report["floor_ratio_p50"],
        "ingest_burst_items_per_s": report["ingest_burst"]["items_per_s"],
        "faults_fired": sorted(
            [name for name in report["faults"] if not name.endswith("_at_s")]
            + (["pause"] if report["pause"].get("paused_at") else [])
        ),
        "invariants": report["invariants"],
        "pii_found": report["log_scan"]["pii_found"],
        "measurement_errors": report["measurement_errors"],
        "violations": report["violations"],
    }
