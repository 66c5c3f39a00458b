"""Erasure of one data subject, and retention of personal values, across every record.

Personal values are stored as the subject's tokens (``governance.privacy``). Erasing a
subject destroys their key, so every token of theirs, in every copy, becomes
unreadable; this module also finds what the subject appears in (the answer lists it,
kind by kind) and scrubs any plaintext copy of their values that was written before
their values were declared personal. Retention replaces the tokens in records older
than the workflow's days for their kind with ``[expired]``.

Rows stay: the work items, runs, proposals, decisions, executions, escalations and
eval cases remain with their statuses, verdicts, costs and counts, so the metrics and
the promotion gate read the same numbers after an erasure or a retention run. Neither
touches the audit log: its events hold identifiers and hashes, never values (a tool's
error message they quote is stored with tokens).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from agents.models import (
    Escalation,
    EvalCase,
    EvalCaseResult,
    Execution,
    Proposal,
    Run,
    Step,
    WorkItem,
)
from governance import privacy
from governance.audit import audit_append
from governance.models import DataSubject, Workflow
from reviews.models import (
    Approval,
    Decision,
    EscalationResolution,
    HumanAction,
    UndoneDecision,
)

logger = logging.getLogger(__name__)

ERR_NO_SUBJECT = "No data subject is known by that identifier."
ERR_IDENTIFIER = "Give the identifier the workflow declares (customer id, e-mail or phone)."
BATCH = 500


@dataclass(frozen=True)
class Record:
    """One kind of record that may carry personal values: its model, the columns that
    may hold them, how a row leads to its work item, its retention kind, and whether
    the database lets it be updated at all."""

    name: str
    model: type[models.Model]
    columns: tuple[str, ...]
    workflow_path: str  # the lookup from the row to its workflow's id
    retention_kind: str
    date_field: str = "created_at"
    updatable: bool = True


RECORDS = (
    Record("work_items", WorkItem, ("payload", "title"), "workflow_id", "payloads"),
    Record("runs", Run, ("state",), "work_item__workflow_id", "traces"),
    Record("traces", Step, ("input", "output", "error"), "run__work_item__workflow_id", "traces"),
    Record(
        "proposals",
        Proposal,
        ("arguments", "rationale", "provenance"),
        "workflow_id",
        "arguments",
    ),
    Record(
        "executions",
        Execution,
        ("arguments", "result", "error"),
        "proposal__workflow_id",
        "arguments",
    ),
    Record(
        "decisions",
        Decision,
        ("final_arguments", "diff", "reason_text"),
        "proposal__workflow_id",
        "arguments",
        updatable=False,  # append-only in the database (reviews migration 0005)
    ),
    Record(
        "approvals",
        Approval,
        ("final_arguments", "diff", "reason_text"),
        "proposal__workflow_id",
        "arguments",
    ),
    Record(
        "undone_decisions",
        UndoneDecision,
        ("decision",),
        "proposal__workflow_id",
        "arguments",
        date_field="undone_at",
    ),
    Record("missed_actions", HumanAction, ("arguments",), "workflow_id", "arguments"),
    Record("packets", Escalation, ("packet", "detail"), "workflow_id", "packets"),
    Record(
        "resolutions",
        EscalationResolution,
        ("note", "action_taken"),
        "escalation__workflow_id",
        "packets",
    ),
    Record(
        "eval_cases",
        EvalCase,
        ("title", "payload", "recorded_outputs", "expected_actions", "forbidden_actions"),
        "suite__workflow_id",
        "payloads",
    ),
    Record(
        "eval_results",
        EvalCaseResult,
        ("expected", "actual", "diff", "error"),
        "run__suite__workflow_id",
        "payloads",
        date_field="run__started_at",
    ),
)


def _contains(record: Record, needle: str) -> Q:
    """Rows whose columns' text holds ``needle`` (JSON compared as its text)."""
    query = Q()
    for column in record.columns:
        query |= Q(**{f"_privacy_{column}__contains": needle})
    return query


def _annotated(record: Record, queryset: models.QuerySet[Any] | None = None) -> Any:
    queryset = queryset if queryset is not None else record.model._default_manager.all()
    return queryset.annotate(
        **{f"_privacy_{column}": Cast(column, TextField()) for column in record.columns}
    )


def _token_needle(subject_id: int) -> str:
    return f"[pii:{subject_id}:"


# --- erasure ----------------------------------------------------------------------------


@dataclass
class Erasure:
    subject_ids: list[int]
    records: dict[str, int]  # kind -> rows that held the subject's values
    scrubbed: dict[str, int]  # kind -> rows whose plaintext copies were replaced

    def as_dict(self) -> dict[str, Any]:
        return {
            "subjects": self.subject_ids,
            "records": self.records,
            "scrubbed": self.scrubbed,
            "erased": sum(self.records.values()),
        }


def _scrub(value: Any, plaintexts: list[str]) -> Any:
    def change(text: str) -> str:
        if text in plaintexts:
            return privacy.ERASED
        for plain in plaintexts:
            if len(plain) >= privacy.MIN_SUBSTRING and plain in text:
                text = text.replace(plain, privacy.ERASED)
        return text

    return privacy.map_strings(value, change)


def _subject_erase(subject: DataSubject, actor: Any) -> tuple[dict[str, int], dict[str, int]]:
    needle = _token_needle(subject.pk)
    found: dict[str, int] = {}
    scrubbed: dict[str, int] = {}
    stored: list[Any] = []
    for record in RECORDS:
        rows = _annotated(record).filter(_contains(record, needle))
        values = list(rows.values("pk", *record.columns))
        found[record.name] = len(values)
        stored.extend(v for row in values for k, v in row.items() if k != "pk")
    # The values, read while the key still exists: a plaintext copy of them anywhere in
    # the workflow's records goes too (a tool's output about them in another item's
    # trace, text written before a field was declared personal).
    plaintexts = sorted(privacy.subject_values(subject, stored), key=len, reverse=True)
    if plaintexts:
        for record in RECORDS:
            if not record.updatable:
                continue
            rows = _annotated(record).filter(**{record.workflow_path: subject.workflow_id})
            query = Q()
            for plain in plaintexts:
                query |= _contains(record, plain)
            count = 0
            for row in rows.filter(query).values("pk", *record.columns):
                changes = {c: _scrub(row[c], plaintexts) for c in record.columns}
                record.model._default_manager.filter(pk=row["pk"]).update(**changes)
                count += 1
            if count:
                scrubbed[record.name] = count
    privacy.subject_shred(subject)
    audit_append(
        action="privacy.subject.erased",
        actor=actor,
        workflow=subject.workflow,
        obj=subject,
        data={
            "subject": subject.pk,
            "records": {k: v for k, v in found.items() if v},
            "scrubbed": scrubbed,
        },
    )
    return found, scrubbed


def subject_erase(*, identifier: str, actor: Any, workflow: Workflow | None = None) -> Erasure:
    """Erase every subject the identifier names (in one workflow, or in all): their key
    destroyed, any plaintext copy scrubbed, one audit event each (counts, never values).
    Raises LookupError when no live subject has that identifier."""
    identifier = (identifier or "").strip()
    if not identifier:
        raise ValueError(ERR_IDENTIFIER)
    with transaction.atomic():
        subjects = privacy.subjects_find(identifier, workflow)
        subjects = list(
            DataSubject.objects.select_for_update()
            .select_related("workflow")
            .filter(pk__in=[s.pk for s in subjects], erased_at__isnull=True)
        )
        if not subjects:
            raise LookupError(ERR_NO_SUBJECT)
        records: dict[str, int] = {r.name: 0 for r in RECORDS}
        scrubbed: dict[str, int] = {}
        for subject in subjects:
            found, cleaned = _subject_erase(subject, actor)
            for kind, count in found.items():
                records[kind] += count
            for kind, count in cleaned.items():
                scrubbed[kind] = scrubbed.get(kind, 0) + count
    logger.info("erased %s data subject(s): %s", len(subjects), [s.pk for s in subjects])
    return Erasure(subject_ids=[s.pk for s in subjects], records=records, scrubbed=scrubbed)


# --- retention --------------------------------------------------------------------------


def _expire_rows(record: Record, workflow: Workflow, cutoff: dt.datetime) -> int:
    rows = _annotated(record).filter(_contains(record, "[pii:"))
    rows = rows.filter(**{f"{record.date_field}__lt": cutoff, record.workflow_path: workflow.pk})
    count = 0
    ids = list(rows.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), BATCH):
        with transaction.atomic():
            chunk = record.model._default_manager.filter(pk__in=ids[start : start + BATCH])
            for row in chunk.values("pk", *record.columns):
                changes = {c: privacy.expire(row[c]) for c in record.columns}
                record.model._default_manager.filter(pk=row["pk"]).update(**changes)
                count += 1
    return count


def retention_rules(workflow: Workflow) -> list[dict[str, Any]]:
    """The rules in force, kind by kind (days; 0 keeps personal values until erased)."""
    policy = privacy.policy_of(workflow)
    rules = []
    for kind in privacy.KINDS:
        days = policy.retention(kind)
        if kind == "traces" and not days:
            days = workflow.trace_retention_days
        rules.append(
            {
                "kind": kind,
                "days": days,
                "records": [r.name for r in RECORDS if r.retention_kind == kind],
            }
        )
    return rules


def _subjects_expire(workflow: Workflow, rules: dict[str, int], now: dt.datetime) -> int:
    """When every kind of record has a retention, a subject last seen longer ago than
    the longest of them has nothing left to keep: their key is destroyed, which also
    reaches the copies the database keeps append-only (decisions)."""
    if any(not rules.get(kind) for kind in privacy.KINDS):
        return 0
    horizon = now - dt.timedelta(days=max(rules.values()))
    subjects = DataSubject.objects.select_for_update().filter(
        workflow=workflow, erased_at__isnull=True, last_seen_at__lt=horizon
    )
    count = 0
    for subject in subjects:
        privacy.subject_shred(subject)
        count += 1
    return count


def retention_apply(*, now: dt.datetime | None = None) -> dict[str, Any]:
    """Replace personal values past each workflow's retention with ``[expired]``; one
    audit event per workflow that had rules (counts, never values). Rows stay. Kinds
    held append-only by the database (decisions) are left as they are: their tokens
    become unreadable when the subject is erased."""
    now = now or timezone.now()
    totals: dict[str, Any] = {"workflows": 0, "expired": {}}
    for workflow in Workflow.objects.exclude(data_policy={}):
        policy = privacy.policy_of(workflow)
        counts: dict[str, int] = {}
        rules = {k: policy.retention(k) for k in privacy.KINDS if policy.retention(k)}
        if not rules:
            continue
        for record in RECORDS:
            days = rules.get(record.retention_kind)
            if not days or not record.updatable:
                continue
            counts[record.name] = _expire_rows(record, workflow, now - dt.timedelta(days=days))
        with transaction.atomic():
            shredded = _subjects_expire(workflow, rules, now)
            audit_append(
                action="privacy.retention.applied",
                actor="system:retention",
                workflow=workflow,
                data={
                    "rules": rules,
                    "expired": counts,
                    "subjects_shredded": shredded,
                    "at": now.isoformat(),
                },
            )
        totals["workflows"] += 1
        for name, count in counts.items():
            totals["expired"][name] = totals["expired"].get(name, 0) + count
    return totals
