"""The data a run starts from: reviewers, refunds' grants, an API token, and N
proposals with their history bulk-loaded by COPY (after ``seed_demo``)."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timedelta
from typing import Any

from .config import INGEST_OFF_SLUG, PASSWORD, SLUG, now_utc


def legacy_hash(arguments: dict[str, Any]) -> str:
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


def bulk_load(n: int, pending_share: float, prefix: str = "bulk") -> dict[str, Any]:
    """COPY ``n`` refund proposals (one per work item, one run, one step each) into
    refunds: most decided (with Decision rows spread over 28 days), the rest pending.
    Each is a $0.50 refund on a seeded sandbox order, so an approval really executes."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from bench.benchdb import reset_sequences
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
                    (base_item + i, workflow.pk, f"{prefix}-{i}", "Bulk refund request",
                     '{"text": "Please refund order, it arrived damaged.", "channel": "bulk"}',
                     "api", "integration:soak", "resolved" if done else "awaiting_review",
                     (i % 7 != 0) if done else None, at, at,
                     at + timedelta(minutes=3) if done else None)
                )  # fmt: skip
        with cur.copy(
            "COPY agents_run (id, work_item_id, attempt, status, stop_reason, autonomy_level, "
            "model, agent_version, prompt_version, tokens_in, tokens_cached, tokens_out, "
            "cost_usd, unpriced, tool_cost_usd, tool_calls, retries, cache_hits, cache_misses, "
            "wall_ms, state, created_at, started_at, finished_at) FROM STDIN"
        ) as copy:
            for i in range(n):
                at = when(i)
                copy.write_row(
                    (base_run + i, base_item + i, 1, "proposed", "completed", "shadow",
                     "demo-small", "1", "1", 900, 0, 120, "0.000207", False, "0", 2, 0, 0, 1,
                     850, "{}",
                     at, at, at + timedelta(seconds=1))
                )  # fmt: skip
        with cur.copy(
            "COPY agents_step (run_id, index, kind, name, input, output, error, is_retry, "
            "cached, model, latency_ms, tokens_in, tokens_cached, tokens_out, cost_usd, "
            "unpriced, created_at) FROM STDIN"
        ) as copy:
            for i in range(n):
                copy.write_row(
                    (base_run + i, 1, "model_call", "demo-small", '{"input": "<data>"}',
                     '{"output": "ok"}', "", False, False, "demo-small", 310, 900, 0, 120,
                     "0.000207", False, when(i))
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
        # Each decided item's account is complete: its item-level outcome (console).
        with cur.copy(
            "COPY reviews_itemoutcome (work_item_id, workflow_id, source, did_nothing, imported, "
            "occurred_at, created_at) FROM STDIN"
        ) as copy:
            for i in range(decided):
                at = when(i) + timedelta(minutes=3)
                copy.write_row((base_item + i, workflow.pk, "console", i % 10 == 0, False, at, at))
        reset_sequences(
            cur,
            (
                "agents_workitem",
                "agents_run",
                "agents_step",
                "agents_proposal",
                "reviews_decision",
                "reviews_itemoutcome",
            ),
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
