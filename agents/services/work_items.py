"""Work items in: created one at a time or in batches, idempotently, each sent to a
worker once its transaction commits; and an escalated item given back to the agent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from agents import queue, states
from agents import sql as agents_sql
from agents.models import Run, WorkItem
from governance import hygiene, privacy
from governance.audit import audit_append
from governance.models import AutonomyLevel, Workflow

ERR_PAYLOAD_NOT_OBJECT = "The payload must be a JSON object, not {kind}."
ERR_PAYLOAD_TEXT = "The payload's “text” must be a string."
ERR_PAYLOAD_TOO_BIG = (
    "The payload is too large ({size} bytes; the limit, TENURE_PAYLOAD_MAX_BYTES, is {limit})."
)
ERR_PAYLOAD_TOO_DEEP = (
    "The payload nests deeper than {max} levels (the limit, {setting}), at {path}."
)
ERR_PAYLOAD_TOO_MANY_KEYS = (
    "An object in the payload has {count} keys (the limit, {setting}, is {max}), at {path}."
)
ERR_PAYLOAD_TOO_MANY_ITEMS = (
    "A list in the payload has {count} items (the limit, {setting}, is {max}), at {path}."
)
ERR_PAYLOAD_UNSTORABLE = "{problem} (at {path})"
ERR_PAYLOAD_NOT_JSON = "The payload must be JSON-serialisable: {error}"
ERR_EXTERNAL_ID = "The external id must be 1 to 200 characters."
ERR_SOURCE = "“{source}” is not a work-item source."
# Defaults of the payload limits (settings TENURE_PAYLOAD_MAX_*). A payload is data for
# the agent's prompt: nothing real nests 32 deep, and every later step (redaction,
# the prompt, the trace) walks it, so one that does is refused at the door.
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_PAYLOAD_DEPTH = 32
MAX_PAYLOAD_KEYS = 1000
MAX_PAYLOAD_ITEMS = 10_000
ERR_BATCH_DUPLICATE = "external_id “{external_id}” appears more than once in the batch."
# Ids per fan-out message: a batch is at most 1000 items, so one message per request.
FAN_OUT_CHUNK = 1000
# How much of a key a path shows (a key is the sender's text, of any length).
PATH_KEY_CHARS = 40


@dataclass(frozen=True)
class PayloadLimits:
    max_bytes: int = MAX_PAYLOAD_BYTES
    max_depth: int = MAX_PAYLOAD_DEPTH
    max_keys: int = MAX_PAYLOAD_KEYS
    max_items: int = MAX_PAYLOAD_ITEMS


def payload_limits() -> PayloadLimits:
    """The limits in force (settings ``TENURE_PAYLOAD_MAX_BYTES``, ``_DEPTH``, ``_KEYS``,
    ``_ITEMS``; the defaults above when unset)."""
    return PayloadLimits(
        max_bytes=int(getattr(settings, "TENURE_PAYLOAD_MAX_BYTES", MAX_PAYLOAD_BYTES)),
        max_depth=int(getattr(settings, "TENURE_PAYLOAD_MAX_DEPTH", MAX_PAYLOAD_DEPTH)),
        max_keys=int(getattr(settings, "TENURE_PAYLOAD_MAX_KEYS", MAX_PAYLOAD_KEYS)),
        max_items=int(getattr(settings, "TENURE_PAYLOAD_MAX_ITEMS", MAX_PAYLOAD_ITEMS)),
    )


def _path_of(parts: tuple[str | int, ...]) -> str:
    out = "payload"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and len(part) <= PATH_KEY_CHARS:
            out += f".{part}"
        else:
            shown = part if len(part) <= PATH_KEY_CHARS else part[:PATH_KEY_CHARS] + "…"
            out += f"[{json.dumps(shown)}]"
    return out


def _literal(message: str) -> str:
    """A finished message for a ValidationError that has params: Django %-formats its
    message with them, so a "%" in a key the sender chose must be doubled."""
    return message.replace("%", "%%")


def _refuse(message: str, code: str, **params: Any) -> None:
    raise ValidationError(_literal(message.format(**params)), code=code, params=params)


def _payload_shape_check(payload: dict[str, Any], limits: PayloadLimits) -> None:
    """Depth, keys per object, items per list, and text and numbers a record can hold,
    in one walk without recursion (a payload may nest thousands deep)."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(payload, 1, ())]
    while stack:
        value, depth, parts = stack.pop()
        if isinstance(value, dict | list) and depth > limits.max_depth:
            _refuse(ERR_PAYLOAD_TOO_DEEP, "payload_depth", max=limits.max_depth,
                    setting="TENURE_PAYLOAD_MAX_DEPTH", path=_path_of(parts))  # fmt: skip
        if isinstance(value, dict):
            if len(value) > limits.max_keys:
                _refuse(ERR_PAYLOAD_TOO_MANY_KEYS, "payload_keys", count=len(value),
                        max=limits.max_keys, setting="TENURE_PAYLOAD_MAX_KEYS",
                        path=_path_of(parts))  # fmt: skip
            for key, child in value.items():
                problem = hygiene.text_problem(key) if isinstance(key, str) else None
                if problem:
                    _refuse(ERR_PAYLOAD_UNSTORABLE, "payload_unstorable", problem=problem,
                            path=_path_of((*parts, key)))  # fmt: skip
                stack.append((child, depth + 1, (*parts, key)))
        elif isinstance(value, list):
            if len(value) > limits.max_items:
                _refuse(ERR_PAYLOAD_TOO_MANY_ITEMS, "payload_items", count=len(value),
                        max=limits.max_items, setting="TENURE_PAYLOAD_MAX_ITEMS",
                        path=_path_of(parts))  # fmt: skip
            stack.extend((child, depth + 1, (*parts, i)) for i, child in enumerate(value))
        else:
            problem = hygiene.first_problem(value)
            if problem is not None:
                _refuse(ERR_PAYLOAD_UNSTORABLE, "payload_unstorable", problem=problem.message,
                        path=_path_of(parts))  # fmt: skip


def payload_check(payload: Any, *, limits: PayloadLimits | None = None) -> None:
    """Refuse a payload no work item should carry, with a ValidationError whose message
    names the limit and where it was hit (``params``: the limit's setting, its value and
    the path). Used by every way in: the API (one item and batches), history imports."""
    limits = limits or payload_limits()
    if not isinstance(payload, dict):
        raise ValidationError(
            ERR_PAYLOAD_NOT_OBJECT.format(kind=type(payload).__name__), code="payload_not_object"
        )
    if "text" in payload and not isinstance(payload["text"], str):
        raise ValidationError(ERR_PAYLOAD_TEXT, code="payload_text")
    _payload_shape_check(payload, limits)
    try:
        size = len(json.dumps(payload).encode())
    except (TypeError, ValueError) as exc:
        raise ValidationError(ERR_PAYLOAD_NOT_JSON.format(error=exc), code="payload_json") from exc
    if size > limits.max_bytes:
        _refuse(ERR_PAYLOAD_TOO_BIG, "payload_size", size=size, limit=limits.max_bytes,
                setting="TENURE_PAYLOAD_MAX_BYTES", path="payload")  # fmt: skip


def work_item_dispatch(*, work_item: WorkItem) -> None:
    """Send the item to a worker once the current transaction commits."""
    item_id = work_item.pk
    transaction.on_commit(lambda: queue.send(queue.RUN_AGENT, item_id))


def work_item_create(
    *,
    workflow: Workflow,
    external_id: str,
    payload: Any,
    source: str,
    title: str = "",
    principal: str = "",
) -> tuple[WorkItem, bool]:
    """Create a work item, idempotent on (workflow, external id). A duplicate returns
    the original with created=False. A new item is dispatched to run_agent on commit."""
    external_id = (external_id or "").strip()
    if not external_id or len(external_id) > 200:
        raise ValidationError(ERR_EXTERNAL_ID, code="external_id")
    if source not in WorkItem.Source.values:
        raise ValidationError(ERR_SOURCE.format(source=source), code="source")
    payload_check(payload)
    title = (title or str(payload.get("title", "")))[:300]
    try:
        with transaction.atomic():
            item = _insert_new(
                workflow=workflow,
                rows=[(external_id, title, payload)],
                source=source,
                principal=principal,
            ).get(external_id)
            if item is None:
                # A retry (or a concurrent request that got there first) returns the
                # original. An item whose task never reached the broker is re-sent by
                # the stranded-work sweeper (``stranded_redispatch``).
                return WorkItem.objects.get(workflow=workflow, external_id=external_id), False
            audit_append(
                action="work_item.received",
                actor=principal or f"integration:{source}",
                workflow=workflow,
                obj=item,
                data={"external_id": external_id, "source": source},
            )
            if workflow.autonomy_level != AutonomyLevel.OFF:
                work_item_dispatch(work_item=item)
    except IntegrityError:
        # Only on the ORM fallback of ``_insert_new``: a concurrent request won.
        return WorkItem.objects.get(workflow=workflow, external_id=external_id), False
    return item, True


def work_item_retry(*, work_item: WorkItem) -> Run:
    """Give an escalated item back to the agent (a human sent it back): a fresh
    attempt, queued, and dispatched once the transaction commits."""
    last = work_item.runs.order_by("-attempt").values_list("attempt", flat=True).first()
    run = Run.objects.create(
        work_item=work_item,
        attempt=(last or 0) + 1,
        status=Run.Status.QUEUED,
        autonomy_level=work_item.workflow.autonomy_level,
    )
    states.work_item_move(work_item.pk, to=WorkItem.Status.RECEIVED)
    work_item.status = WorkItem.Status.RECEIVED
    work_item_dispatch(work_item=work_item)
    return run


def work_items_dispatch_received(*, workflow: Workflow) -> list[int]:
    """Dispatch items still waiting for their first run (e.g. after a resume)."""
    ids = list(
        WorkItem.objects.filter(workflow=workflow, status=WorkItem.Status.RECEIVED).values_list(
            "pk", flat=True
        )
    )
    if ids:
        # A resumed backlog goes out like a batch: one fan-out message per 1000 items.
        transaction.on_commit(lambda: _dispatch_many(ids))
    return ids


@dataclass(frozen=True)
class NewWorkItem:
    external_id: str
    payload: Any
    title: str = ""


def _dispatch_many(ids: list[int]) -> None:
    """Send new items to workers: one ``run_agents`` message per chunk, which a worker
    fans out into one ``run_agent`` task per item (each item still gets its own run,
    retries and ack). Publishing a message per item cost the request ~1 ms each.

    A message lost to a broker outage leaves its items received; the stranded-work
    sweeper re-sends them one by one, as for single items."""
    if len(ids) == 1:
        queue.send(queue.RUN_AGENT, ids[0])
        return
    for start in range(0, len(ids), FAN_OUT_CHUNK):
        queue.send(queue.RUN_AGENTS, ids[start : start + FAN_OUT_CHUNK])


def work_items_waiting(*, work_item_ids: list[int]) -> list[int]:
    """Of these items, those still waiting for their first run (the fan-out task
    sends one ``run_agent`` for each)."""
    return list(
        WorkItem.objects.filter(pk__in=work_item_ids, status=WorkItem.Status.RECEIVED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def work_items_create_bulk(
    *, workflow: Workflow, items: list[NewWorkItem], source: str, principal: str = ""
) -> list[tuple[WorkItem, bool]]:
    """Create many work items at once, idempotent on (workflow, external id) like
    ``work_item_create``: one multi-row insert, one audit event for the batch, and a
    run dispatched for each new item when the transaction commits.

    Every item is validated first; a bad one raises ValidationError naming its index
    (``error.params["index"]``) and nothing is written. Ids a concurrent request
    inserts first come back as existing (only the ORM fallback of ``_insert_new``
    raises IntegrityError for them: callers then retry item by item).
    """
    if source not in WorkItem.Source.values:
        raise ValidationError(ERR_SOURCE.format(source=source), code="source")
    seen: set[str] = set()
    for index, new in enumerate(items):
        external_id = (new.external_id or "").strip()
        try:
            if not external_id or len(external_id) > 200:
                raise ValidationError(ERR_EXTERNAL_ID, code="external_id")
            if external_id in seen:
                raise ValidationError(
                    ERR_BATCH_DUPLICATE.format(external_id=external_id), code="duplicate"
                )
            payload_check(new.payload)
        except ValidationError as exc:
            params = {**(exc.params or {}), "index": index}
            raise ValidationError(_literal(exc.messages[0]), code=exc.code, params=params) from exc
        seen.add(external_id)
    ids = [new.external_id.strip() for new in items]
    titles = [(new.title or str(new.payload.get("title", "")))[:300] for new in items]
    with transaction.atomic():
        inserted = _insert_new(
            workflow=workflow,
            rows=list(zip(ids, titles, (new.payload for new in items), strict=True)),
            source=source,
            principal=principal,
        )
        created = [inserted[external_id] for external_id in ids if external_id in inserted]
        fresh = {item.external_id for item in created}
        existing = {}
        if len(fresh) < len(ids):
            existing = {
                item.external_id: item
                for item in WorkItem.objects.filter(
                    workflow=workflow, external_id__in=[i for i in ids if i not in fresh]
                )
            }
        if created:
            audit_append(
                action="work_items.received",
                actor=principal or f"integration:{source}",
                workflow=workflow,
                data={
                    "count": len(created),
                    "source": source,
                    "external_ids": [item.external_id for item in created],
                },
            )
            if workflow.autonomy_level != AutonomyLevel.OFF:
                new_ids = [item.pk for item in created]
                transaction.on_commit(lambda: _dispatch_many(new_ids))
    by_external = {**existing, **{item.external_id: item for item in created}}
    return [(by_external[external_id], external_id in fresh) for external_id in ids]


def _insert_new(
    *, workflow: Workflow, rows: list[tuple[str, str, Any]], source: str, principal: str
) -> dict[str, WorkItem]:
    """Insert the rows (external id, title, payload) whose external id the workflow
    does not hold yet; returns the new items by external id. One statement on
    PostgreSQL (``agents.sql.work_items_insert_new``), the ORM elsewhere. Personal
    values the workflow declares are stored as tokens (``governance.privacy``)."""
    rows = _rows_protected(workflow, rows)
    inserted = agents_sql.work_items_insert_new(
        workflow=workflow, rows=rows, source=source, principal=principal
    )
    if inserted is None:
        return _insert_new_orm(workflow=workflow, rows=rows, source=source, principal=principal)
    return inserted


def _rows_protected(
    workflow: Workflow, rows: list[tuple[str, str, Any]]
) -> list[tuple[str, str, Any]]:
    if not privacy.policy_of(workflow).declared:
        return rows
    out = []
    for external_id, title, payload in rows:
        stored, vault = privacy.payload_protect(workflow, payload)
        out.append((external_id, vault.protect(title), stored))
    return out


def _insert_new_orm(
    *, workflow: Workflow, rows: list[tuple[str, str, Any]], source: str, principal: str
) -> dict[str, WorkItem]:
    """``_insert_new`` through the ORM. A concurrent insert of the same id raises
    IntegrityError here: callers fall back to the original item."""
    taken = set(
        WorkItem.objects.filter(
            workflow=workflow, external_id__in=[external_id for external_id, _, _ in rows]
        ).values_list("external_id", flat=True)
    )
    created = WorkItem.objects.bulk_create(
        [
            WorkItem(
                workflow=workflow,
                external_id=external_id,
                payload=payload,
                source=source,
                title=title,
                source_principal=principal[:150],
            )
            for external_id, title, payload in rows
            if external_id not in taken
        ],
        batch_size=500,
    )
    return {item.external_id: item for item in created}


def run_for_work_item(*, work_item: WorkItem) -> Run | None:
    return work_item.runs.order_by("-attempt").first()
