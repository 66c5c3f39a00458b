"""The reviewer queues: what they hold, their filters, sizes and rows. Every
function runs a fixed number of statements, whatever the size of the queue (per
workflow in scope, never per row)."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from agents.models import Proposal, RiskClass
from governance import sqlkit
from governance.models import Workflow
from reviews import sql as reviews_sql


def cut_text(text: str, length: int) -> str:
    """``truncatechars``, without its per-character walk for text that fits."""
    if len(text) <= length:
        return unicodedata.normalize("NFC", text)  # what Truncator returns uncut
    return truncatechars(text, length)


# Counting a million pending rows on every poll costs more than the number is
# worth: above this, the queue says "1000+".
COUNT_CAP = 1000
QUEUE_PAGE_SIZE = 25


def awaiting_review_q(prefix: str = "") -> Q:
    """Waiting for a human before it may run (``Proposal.AWAITING_REVIEW``)."""
    return Q(**{f"{prefix}{name}": value for name, value in Proposal.AWAITING_REVIEW.items()})


def awaiting_sample_q(prefix: str = "") -> Q:
    """Executed automatically, picked for post-hoc review, not reviewed yet
    (``Proposal.AWAITING_SAMPLE``)."""
    fields = {f"{prefix}{name}": value for name, value in Proposal.AWAITING_SAMPLE.items()}
    return Q(**fields, **{f"{prefix}decision__isnull": True})


def claimable_q(prefix: str = "") -> Q:
    return awaiting_review_q(prefix) | awaiting_sample_q(prefix)


def is_sample(proposal: Proposal) -> bool:
    return proposal.status == Proposal.Status.EXECUTED and proposal.sampled_for_review


@dataclass(frozen=True)
class QueueFilters:
    tool: str = ""
    risk_class: str = ""
    verdict: str = ""
    flagged: bool | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> QueueFilters:
        flagged = query.get("flagged", "")
        return cls(
            tool=query.get("tool", "").strip()[:100],
            risk_class=query.get("risk", "") if query.get("risk") in RiskClass.values else "",
            verdict=query.get("verdict", "")
            if query.get("verdict") in Proposal.Verdict.values
            else "",
            flagged=True if flagged == "1" else False if flagged == "0" else None,
        )

    def as_q(self, prefix: str = "") -> Q:
        q = Q()
        if self.tool:
            q &= Q(**{f"{prefix}tool": self.tool})
        if self.risk_class:
            q &= Q(**{f"{prefix}risk_class": self.risk_class})
        if self.verdict:
            q &= Q(**{f"{prefix}verdict": self.verdict})
        if self.flagged is not None:
            q &= Q(**{f"{prefix}flagged_injection": self.flagged})
        return q

    def apply(self, queryset: QuerySet[Proposal]) -> QuerySet[Proposal]:
        return queryset.filter(self.as_q())

    def as_sql(self, alias: str) -> tuple[str, list[Any]]:
        """The filters as ``AND ...`` conditions on the proposal ``alias`` (for the
        hand-written claim statements), and their parameters."""
        conditions, params = [], []
        for column, value in (
            ("tool", self.tool),
            ("risk_class", self.risk_class),
            ("verdict", self.verdict),
            ("flagged_injection", self.flagged),
        ):
            if value not in ("", None):
                conditions.append(f" AND {alias}.{sqlkit.qn(column)} = %s")
                params.append(value)
        return "".join(conditions), params

    def as_query(self) -> dict[str, str]:
        query = {"tool": self.tool, "risk": self.risk_class, "verdict": self.verdict}
        if self.flagged is not None:
            query["flagged"] = "1" if self.flagged else "0"
        return {k: v for k, v in query.items() if v}

    @property
    def active(self) -> bool:
        return bool(self.as_query())


@dataclass(frozen=True)
class QueueSize:
    workflow: Workflow
    pending: int
    escalations: int
    oldest_pending_at: datetime | None
    oldest_escalation_at: datetime | None

    @property
    def pending_label(self) -> str:
        return f"{COUNT_CAP}+" if self.pending >= COUNT_CAP else str(self.pending)

    @property
    def escalations_label(self) -> str:
        return f"{COUNT_CAP}+" if self.escalations >= COUNT_CAP else str(self.escalations)


def oldest_pending_at(workflow_id: int) -> datetime | None:
    return reviews_sql.oldest_pending_at(workflow_id)


def queue_sizes(workflows: list[Workflow]) -> list[QueueSize]:
    """Live counts for each workflow: one statement per workflow."""
    sizes = []
    for workflow in workflows:
        pending, escalations, oldest_pending, oldest_escalation = reviews_sql.queue_size(
            workflow.pk, cap=COUNT_CAP
        )
        sizes.append(
            QueueSize(
                workflow=workflow,
                pending=pending,
                escalations=escalations,
                oldest_pending_at=oldest_pending,
                oldest_escalation_at=oldest_escalation,
            )
        )
    return sizes


@dataclass(frozen=True)
class QueueRow:
    """One line of the queue list: plain values, read without building models (the
    list renders on every page view and every poll), and the text it shows made
    here, once, rather than by template filters per row."""

    pk: int
    workflow_id: int
    workflow_name: str
    tool: str
    risk_class: str
    flagged_injection: bool
    status: str
    priority: int
    created_at: datetime
    title: str
    holder: str  # who holds a claim on it, or ""
    card_url: str  # with the list's query string (scope, filters)
    title_short: str = ""  # the title cut at 60 characters
    age: str = ""  # "3 minutes", as timesince says it

    @property
    def risk_label(self) -> str:
        return str(RiskClass(self.risk_class).label) if self.risk_class in RiskClass.values else ""


def queue_rows(
    *,
    workflow_ids: list[int],
    filters: QueueFilters,
    limit: int = QUEUE_PAGE_SIZE,
    query: str = "",
) -> list[QueueRow]:
    """The head of the queue in claim order, with who holds each item. ``query`` (the
    list's scope and filters, ``?...``) is appended to each row's card link."""
    if not workflow_ids:
        return []
    filters_sql, filter_params = filters.as_sql("p")
    rows = reviews_sql.queue_rows_fetch(
        workflow_ids=workflow_ids, filters_sql=filters_sql, filter_params=filter_params, limit=limit
    )
    # The ranges together (at most ``limit`` rows each), in claim order.
    merged = sorted(
        ((*row[:9], reviews_sql.as_datetime(row[9]), *row[10:]) for row in rows),
        key=lambda r: (-r[8], r[9], r[0]),
    )[:limit]
    # One reverse() per workflow rather than per row: the list renders on every decision.
    bases: dict[int, str] = {}
    now = timezone.now()
    out = []
    for (
        pk,
        wf_id,
        wf_name,
        slug,
        tool,
        risk,
        flagged,
        status,
        prio,
        created,
        title,
        ext,
        holder,
    ) in merged:
        if wf_id not in bases:
            bases[wf_id] = reverse("review-card", args=[slug, 0]).removesuffix("0/")
        shown = title or ext
        out.append(
            QueueRow(
                pk=pk,
                workflow_id=wf_id,
                workflow_name=wf_name,
                tool=tool,
                risk_class=risk,
                flagged_injection=bool(flagged),
                status=status,
                priority=prio,
                created_at=created,
                title=shown,
                holder=holder or "",
                card_url=f"{bases[wf_id]}{pk}/{query}",
                title_short=cut_text(shown, 60),
                age=timesince(created, now) if created else "",
            )
        )
    return out


def tool_names(workflow_ids: list[int]) -> list[str]:
    """Tools the filter offers: the workflows' grants (cheap), not a scan of the queue."""
    return reviews_sql.tool_names(workflow_ids)
