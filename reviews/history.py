"""Imported history: pairs of what an agent proposed and what the human did, from
before Tenure watched (a backfill), written with their original times.

Each pair becomes a resolved work item (source ``import``) with one run (model
``imported``), the agent's proposals, ``imported`` decisions judged by the same rule
as reports (``reviews.reported.pair_actions``), the item's outcome and any missed
actions, every row marked imported and dated when the human acted. Whether such
evidence counts toward the promotion gate is the workflow's ``gate_counts_imported``.

Idempotent on (workflow, external id): the same pair again is reported as existing
and writes nothing; another body under an imported id, or an id the workflow already
holds as live work, is a conflict. A batch is written in one transaction and audited
as one event (counts, never values).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from agents.models import Proposal, Run, WorkItem
from agents.services import payload_check
from agents.tools import registry_for
from agents.tools.base import arguments_hash
from governance.audit import audit_append
from governance.models import AutonomyLevel, Workflow
from reviews import tools as review_tools
from reviews.models import Decision, HumanAction, ItemOutcome
from reviews.reported import STATUS_FOR_VERDICT, ReportedAction, pair_actions

IMPORTED_MODEL = "imported"
RULE_IMPORTED = "Imported history: no policy was evaluated; a human did the work."
# Rows written per statement when dating a batch back to its original times.
BATCH_SIZE = 500

ERR_UNKNOWN_TOOL = "“{tool}” is not a tool of the workflow “{workflow}”; it has: {known}."
ERR_NAIVE_TIME = "Needs a time zone, e.g. 2026-01-01T09:30:00Z."
ERR_FUTURE_TIME = "Is in the future; history is what already happened."
ERR_TIME_RANGE = "Is out of range."
ERR_CHANGED = (
    "Work item “{external_id}” was already imported with a different body. A retry must "
    "send the same pair; a different item needs a different external_id."
)
ERR_NOT_IMPORTED = (
    "Work item “{external_id}” already exists in this workflow as live work, not as "
    "imported history; use another external_id."
)
ERR_DUPLICATE = "external_id “{external_id}” appears more than once in the batch."
ERR_CONCURRENT = "Another import wrote some of these items at the same time; send the batch again."
ERR_INVALID = "{count} pair(s) did not validate; see details. Nothing was imported."


@dataclass(frozen=True)
class HistoryPair:
    """One past item: the agent's actions and the human's, and when the human acted."""

    external_id: str
    occurred_at: datetime
    proposed: tuple[ReportedAction, ...]
    human: tuple[ReportedAction, ...]
    title: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckedPair:
    index: int
    pair: HistoryPair  # arguments as their tools dump them; occurred_at in UTC
    fingerprint: str


@dataclass
class HistoryCheck:
    valid: list[CheckedPair]
    # index -> field -> messages (``proposed[0].tool``, ``human[1].amount``, ...)
    errors: dict[int, dict[str, list[str]]]
    # index -> why its external id is taken (another body, or live work)
    conflicts: dict[int, str]


@dataclass(frozen=True)
class HistoryResult:
    index: int
    external_id: str
    created: bool
    work_item_id: int
    decisions: int
    missed: int
    did_nothing: bool


class HistoryInvalid(ValidationError):
    """Some pairs do not validate; ``errors`` names each by its index."""

    def __init__(self, errors: dict[int, dict[str, list[str]]]) -> None:
        super().__init__(ERR_INVALID.format(count=len(errors)), code="invalid")
        self.errors = errors


class HistoryConflict(ValidationError):
    """A pair's external id is taken by another body, or by live work."""

    def __init__(self, message: str, *, index: int | None, external_id: str) -> None:
        super().__init__(message, code="conflict")
        self.index = index
        self.external_id = external_id


def _fingerprint(pair: HistoryPair) -> str:
    body = {
        "external_id": pair.external_id,
        "title": pair.title,
        "payload": pair.payload,
        "occurred_at": pair.occurred_at.isoformat(),
        "proposed": [{"tool": a.tool, "arguments": a.arguments} for a in pair.proposed],
        "human": [{"tool": a.tool, "arguments": a.arguments} for a in pair.human],
    }
    canonical = json.dumps(body, cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_actions(
    side: str,
    actions: Sequence[ReportedAction],
    *,
    workflow: Workflow,
    registry: dict[str, Any],
    errors: dict[str, list[str]],
) -> tuple[ReportedAction, ...]:
    out = []
    for position, action in enumerate(actions):
        where = f"{side}[{position}]"
        tool = registry.get(action.tool)
        if tool is None:
            known = ", ".join(sorted(registry)) or "no tools granted"
            errors[f"{where}.tool"] = [
                ERR_UNKNOWN_TOOL.format(tool=action.tool, workflow=workflow.slug, known=known)
            ]
            continue
        final, field_errors = review_tools.validate_arguments(tool, dict(action.arguments))
        if field_errors or final is None:
            for name, messages in field_errors.items():
                errors[f"{where}.arguments.{name}"] = messages
            continue
        out.append(ReportedAction(tool=action.tool, arguments=final))
    return tuple(out)


def _check_payload(payload: dict[str, Any], errors: dict[str, list[str]]) -> None:
    """The same limits as live work items (``agents.services.payload_check``)."""
    try:
        payload_check(payload)
    except ValidationError as exc:
        errors["payload"] = exc.messages


def _check_time(value: datetime, now: datetime, errors: dict[str, list[str]]) -> datetime | None:
    if timezone.is_naive(value):
        errors["occurred_at"] = [ERR_NAIVE_TIME]
        return None
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        errors["occurred_at"] = [ERR_TIME_RANGE]
        return None
    if utc > now:
        errors["occurred_at"] = [ERR_FUTURE_TIME]
        return None
    return utc


def history_check(
    *,
    workflow: Workflow,
    pairs: Sequence[HistoryPair],
    now: datetime | None = None,
    registry: dict[str, Any] | None = None,
) -> HistoryCheck:
    """Validate every pair against the workflow's registry (an unknown tool is an
    error naming it; arguments are checked against their tool's schema) and against
    what the workflow holds (a taken external id). Reads only."""
    now = now or timezone.now()
    registry = registry_for(workflow) if registry is None else registry
    valid: list[CheckedPair] = []
    errors: dict[int, dict[str, list[str]]] = {}
    seen: set[str] = set()
    for index, pair in enumerate(pairs):
        pair_errors: dict[str, list[str]] = {}
        external_id = pair.external_id.strip()
        if external_id in seen:
            pair_errors["external_id"] = [ERR_DUPLICATE.format(external_id=external_id)]
        seen.add(external_id)
        occurred_at = _check_time(pair.occurred_at, now, pair_errors)
        _check_payload(pair.payload, pair_errors)
        kw = {"workflow": workflow, "registry": registry, "errors": pair_errors}
        proposed = _check_actions("proposed", pair.proposed, **kw)
        human = _check_actions("human", pair.human, **kw)
        if pair_errors or occurred_at is None:
            errors[index] = pair_errors
            continue
        checked = HistoryPair(
            external_id=external_id,
            occurred_at=occurred_at,
            proposed=proposed,
            human=human,
            title=(pair.title or str(pair.payload.get("title", "")))[:300],
            payload=pair.payload,
        )
        valid.append(CheckedPair(index=index, pair=checked, fingerprint=_fingerprint(checked)))
    stored = _imported_fingerprints(workflow, [c.pair.external_id for c in valid])
    conflicts = _taken(valid, stored)
    valid = [c for c in valid if c.index not in conflicts]
    return HistoryCheck(valid=valid, errors=dict(sorted(errors.items())), conflicts=conflicts)


def _imported_fingerprints(workflow: Workflow, external_ids: list[str]) -> dict[str, str | None]:
    """external id -> the fingerprint its import stored (None: the id is live work)."""
    found: dict[str, str | None] = {}
    items = WorkItem.objects.filter(workflow=workflow, external_id__in=external_ids)
    for external_id, source, state in items.values_list(
        "external_id", "source", "runs__state"
    ).order_by("external_id", "runs__attempt"):
        if external_id in found:
            continue
        imported = (state or {}).get("import") if isinstance(state, dict) else None
        if source == WorkItem.Source.IMPORT and isinstance(imported, dict):
            found[external_id] = str(imported.get("fingerprint", ""))
        else:
            found[external_id] = None
    return found


def _taken(checked: list[CheckedPair], stored: dict[str, str | None]) -> dict[int, str]:
    """Pairs whose external id the workflow holds (``stored``: its imported
    fingerprints) with another body, or as live work."""
    taken = {}
    for c in checked:
        if c.pair.external_id not in stored:
            continue
        fingerprint = stored[c.pair.external_id]
        if fingerprint is None:
            taken[c.index] = ERR_NOT_IMPORTED.format(external_id=c.pair.external_id)
        elif fingerprint != c.fingerprint:
            taken[c.index] = ERR_CHANGED.format(external_id=c.pair.external_id)
    return taken


def history_import(
    *, workflow: Workflow, pairs: Sequence[HistoryPair], principal: str
) -> list[HistoryResult]:
    """Import a batch of pairs, all or nothing. Raises HistoryInvalid (per-pair errors)
    or HistoryConflict (a taken external id); returns one result per pair, in order."""
    registry = registry_for(workflow)
    checked = history_check(workflow=workflow, pairs=pairs, registry=registry)
    if checked.errors:
        raise HistoryInvalid(checked.errors)
    if checked.conflicts:
        index, message = min(checked.conflicts.items())
        raise HistoryConflict(message, index=index, external_id=pairs[index].external_id)
    with transaction.atomic():
        # Read again in the transaction: an id taken since the check is a conflict.
        stored = _imported_fingerprints(workflow, [c.pair.external_id for c in checked.valid])
        taken = _taken(checked.valid, stored)
        if taken:
            index, message = min(taken.items())
            raise HistoryConflict(message, index=index, external_id=pairs[index].external_id)
        new = [c for c in checked.valid if c.pair.external_id not in stored]
        try:
            with transaction.atomic():
                written = _write(
                    workflow=workflow, checked=new, principal=principal, registry=registry
                )
        except IntegrityError:
            # A concurrent import inserted one of these ids first (the unique constraint).
            raise HistoryConflict(ERR_CONCURRENT, index=None, external_id="") from None
        existing = _existing_results(
            workflow, [c for c in checked.valid if c.pair.external_id in stored]
        )
        if written:
            _audit(workflow=workflow, principal=principal, written=written, existing=len(existing))
    by_index = {**existing, **{r.index: _result(r) for r in written}}
    return [by_index[c.index] for c in checked.valid]


@dataclass
class _Written:
    index: int
    pair: HistoryPair
    item: WorkItem
    run: Run
    proposals: list[Proposal]
    decisions: list[Decision]
    outcome: ItemOutcome
    missed: list[HumanAction]


def _write(
    *, workflow: Workflow, checked: list[CheckedPair], principal: str, registry: dict[str, Any]
) -> list[_Written]:
    if not checked:
        return []
    rows: list[_Written] = []
    for c in checked:
        pair = c.pair
        proposals = [
            Proposal(
                workflow=workflow,
                sequence=position,
                tool=action.tool,
                arguments=action.arguments,
                arguments_hash=arguments_hash(action.arguments),
                risk_class=registry[action.tool].risk_class,
                verdict=Proposal.Verdict.NEEDS_APPROVAL,
                verdict_rule=RULE_IMPORTED,
                autonomy_level=AutonomyLevel.SHADOW,
                status=Proposal.Status.PENDING,
            )
            for position, action in enumerate(pair.proposed, start=1)
        ]
        # The rule reports are judged by, on the whole set the human did.
        plan = pair_actions(pending=proposals, actions=pair.human, tools=registry, complete=True)
        decisions = []
        for pairing in plan.pairings:
            proposal = pairing.proposal
            # History is born decided: the proposal's first status is its verdict's.
            proposal.status = STATUS_FOR_VERDICT[pairing.verdict]
            proposal.decided_at = pair.occurred_at
            decisions.append(
                Decision(
                    reviewer=None,
                    kind=Decision.Kind.IMPORTED,
                    verdict=pairing.verdict,
                    final_arguments=pairing.final_arguments,
                    final_arguments_hash=arguments_hash(pairing.final_arguments),
                    diff=pairing.diff,
                    reason=pairing.reason,
                    reason_text=pairing.reason_text,
                    autonomy_level=AutonomyLevel.SHADOW,
                )
            )
        item = WorkItem(
            workflow=workflow,
            external_id=pair.external_id,
            title=pair.title,
            payload=pair.payload,
            source=WorkItem.Source.IMPORT,
            source_principal=principal[:150],
            # Born resolved. With no success flag: task success and cost per successful
            # outcome count live runs, whose costs are known; history is judged by its
            # decisions and its outcome.
            status=WorkItem.Status.RESOLVED,
            succeeded=None,
            resolved_at=pair.occurred_at,
        )
        run = Run(
            attempt=1,
            status=Run.Status.PROPOSED,
            stop_reason=Run.StopReason.COMPLETED if proposals else Run.StopReason.NO_ACTION,
            autonomy_level=AutonomyLevel.SHADOW,
            model=IMPORTED_MODEL,
            started_at=pair.occurred_at,
            finished_at=pair.occurred_at,
            state={"import": {"fingerprint": c.fingerprint}},
        )
        outcome = ItemOutcome(
            workflow=workflow,
            source=ItemOutcome.Source.IMPORT,
            did_nothing=not pair.human,
            imported=True,
            occurred_at=pair.occurred_at,
        )
        missed = [
            HumanAction(
                workflow=workflow,
                tool=pair.human[position].tool,
                arguments=pair.human[position].arguments,
                imported=True,
                occurred_at=pair.occurred_at,
            )
            for position in plan.missed
        ]
        rows.append(
            _Written(c.index, pair, item, run, proposals, decisions, outcome, missed)
        )  # fmt: skip

    WorkItem.objects.bulk_create([r.item for r in rows], batch_size=BATCH_SIZE)
    for r in rows:
        r.run.work_item = r.outcome.work_item = r.item
    Run.objects.bulk_create([r.run for r in rows], batch_size=BATCH_SIZE)
    for r in rows:
        for proposal in r.proposals:
            proposal.run, proposal.work_item = r.run, r.item
    Proposal.objects.bulk_create([p for r in rows for p in r.proposals], batch_size=BATCH_SIZE)
    for r in rows:
        decided = [p for p in r.proposals if p.status != Proposal.Status.PENDING]
        for proposal, decision in zip(decided, r.decisions, strict=True):
            decision.proposal = proposal
    for r in rows:
        for decision in r.decisions:  # written with their original time: never updated
            decision.created_at = r.pair.occurred_at
    Decision.objects.bulk_create([d for r in rows for d in r.decisions], batch_size=BATCH_SIZE)
    ItemOutcome.objects.bulk_create([r.outcome for r in rows], batch_size=BATCH_SIZE)
    for r in rows:
        for action in r.missed:
            action.work_item, action.outcome = r.item, r.outcome
    HumanAction.objects.bulk_create([m for r in rows for m in r.missed], batch_size=BATCH_SIZE)
    _date_back(rows)
    return rows


def _result(r: _Written) -> HistoryResult:
    return HistoryResult(
        index=r.index,
        external_id=r.pair.external_id,
        created=True,
        work_item_id=r.item.pk,
        decisions=len(r.decisions),
        missed=len(r.missed),
        did_nothing=r.outcome.did_nothing,
    )


def _date_back(rows: list[_Written]) -> None:
    """Creation times are the original ones: ``auto_now_add`` stamped them now. (The
    decisions were written with theirs: the database keeps a decision unchanged.)"""
    groups: dict[type, list[Any]] = {}
    for r in rows:
        for obj in (r.item, r.run, *r.proposals, r.outcome, *r.missed):
            obj.created_at = r.pair.occurred_at
            groups.setdefault(type(obj), []).append(obj)
    for model, objs in groups.items():
        model.objects.bulk_update(objs, ["created_at"], batch_size=BATCH_SIZE)


def _existing_results(workflow: Workflow, checked: list[CheckedPair]) -> dict[int, HistoryResult]:
    if not checked:
        return {}
    ids = [c.pair.external_id for c in checked]
    items = dict(
        WorkItem.objects.filter(workflow=workflow, external_id__in=ids).values_list(
            "external_id", "pk"
        )
    )
    decisions = dict(
        Decision.objects.filter(proposal__work_item__in=items.values())
        .values("proposal__work_item_id")
        .annotate(n=Count("pk"))
        .values_list("proposal__work_item_id", "n")
    )
    missed = dict(
        HumanAction.objects.filter(work_item__in=items.values())
        .values("work_item_id")
        .annotate(n=Count("pk"))
        .values_list("work_item_id", "n")
    )
    nothing = dict(
        ItemOutcome.objects.filter(work_item__in=items.values()).values_list(
            "work_item_id", "did_nothing"
        )
    )
    out = {}
    for c in checked:
        item_id = items[c.pair.external_id]
        out[c.index] = HistoryResult(
            index=c.index,
            external_id=c.pair.external_id,
            created=False,
            work_item_id=item_id,
            decisions=decisions.get(item_id, 0),
            missed=missed.get(item_id, 0),
            did_nothing=bool(nothing.get(item_id, False)),
        )
    return out


def _audit(*, workflow: Workflow, principal: str, written: list[_Written], existing: int) -> None:
    times = [r.pair.occurred_at for r in written]
    audit_append(
        action="history.imported",
        actor=principal,
        workflow=workflow,
        data={
            "created": len(written),
            "existing": existing,
            "proposals": sum(len(r.proposals) for r in written),
            "decisions": dict(
                sorted(Counter(d.verdict for r in written for d in r.decisions).items())
            ),
            "missed": sum(len(r.missed) for r in written),
            "did_nothing": sum(1 for r in written if r.outcome.did_nothing),
            "from": min(times).isoformat(),
            "to": max(times).isoformat(),
        },
    )
