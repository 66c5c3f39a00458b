"""What must hold after the run, checked against the database and our broker, and the
verdict: every broken invariant in words.

Nothing lost (every live item finished, or still has a broker message, or came back
within the sweeper's window: late, reported apart from lost), nothing
executed or decided twice, no claim held beyond its lease, nothing started while the
workflow was paused, 5xx only inside a fault's window, no PII in the logs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .config import CLAIM_LEASE_SECONDS, QUEUE, REDIS_PORT, SWEEP_WINDOW_SECONDS, now_utc
from .db import refunds_id, rows, scalar
from .load import Recorder


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


def late_or_lost(
    candidates: list[int],
    *,
    window: float,
    in_pipeline: Callable[[list[int]], set[int]],
    queued: Callable[[], set[int]],
    poll: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[int], list[int], float]:
    """Items that were neither finished nor queued: wait up to ``window`` (the sweeper's
    stranded-after time plus its period) for each to finish or get a broker message
    again. Those that do are late; those still stranded when the window ends are lost.
    Returns (late, lost, seconds waited)."""
    remaining = set(candidates)
    started = clock()
    while remaining and clock() - started < window:
        sleep(poll)
        still = in_pipeline(sorted(remaining))
        remaining = still - queued() if still else set()
    late = sorted(set(candidates) - remaining)
    return late, sorted(remaining), round(clock() - started, 1)


def _still_in_pipeline(ids: list[int]) -> set[int]:
    return {
        r[0]
        for r in rows(
            "SELECT id FROM agents_workitem WHERE id = ANY(%s)"
            " AND status IN ('received', 'running')",
            [ids],
        )
    }


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
    stranded = [i for i in in_pipeline if i not in queued]
    late, lost, waited = late_or_lost(
        stranded,
        window=SWEEP_WINDOW_SECONDS,
        in_pipeline=_still_in_pipeline,
        queued=broker_work_item_ids,
    )
    out["lost_items"] = {
        "in_pipeline": len(in_pipeline),
        "with_a_broker_message": len(in_pipeline) - len(stranded),
        # Neither finished nor queued when checked, then back (re-sent by the sweeper,
        # or finished) within its window: late, not lost.
        "late": len(late),
        "late_example_ids": late[:10],
        "waited_for_the_sweeper_s": waited,
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


# --- The verdict ----------------------------------------------------------------------


def violations(report: dict[str, Any]) -> list[str]:
    """Every invariant the run broke, in words; empty when the system held."""
    inv = report.get("invariants") or {}
    found: list[str] = []

    def nonzero(label: str, value: Any) -> None:
        if value:
            found.append(f"{label}: {value}")

    lost = inv.get("lost_items") or {}
    nonzero(
        "work items neither finished nor queued after the sweeper's window",
        lost.get("without_a_broker_message"),
    )
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
