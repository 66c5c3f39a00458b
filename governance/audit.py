"""The tamper-evident audit log: one keyed hash chain per workflow.

Appending inserts a row and takes no lock; sealing (after commit) locks only the
head row of that workflow's chain, briefly, so no transaction waits on another's
audit events and none can deadlock on them. Each event's hash is an HMAC under an
audit key held outside the database (``governance.audit_keys``), and the heads are
checkpointed outside it (``governance.checkpoints``): ``audit_verify`` walks every
chain and holds it against every checkpoint.
"""

from __future__ import annotations

import atexit
import hmac
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from governance import sql as governance_sql
from governance import sqlkit
from governance.audit_keys import audit_keys, key_for
from governance.checkpoints import checkpoint_write, checkpoints_read
from governance.models import AuditChain, AuditEvent, Workflow

GLOBAL_CHAIN = "global"

logger = logging.getLogger("tenure.audit")


def chain_key(workflow: Workflow | None) -> str:
    return f"workflow:{workflow.pk}" if workflow is not None else GLOBAL_CHAIN


def actor_label_for(actor: AbstractBaseUser | AnonymousUser | str | None) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    if not actor.is_authenticated:
        return "anonymous"
    return f"user:{actor.get_username()}"


def _user_or_none(actor: Any) -> AbstractBaseUser | None:
    if actor is None or isinstance(actor, str) or not actor.is_authenticated:
        return None
    return actor


def audit_append(
    *,
    action: str,
    actor: AbstractBaseUser | AnonymousUser | str | None,
    workflow: Workflow | None = None,
    obj: Any = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one event. Call inside the transaction that makes the change, so the
    event and the change commit (or roll back) together.

    The event is inserted unsealed and takes no lock: the chain's head is locked
    only by ``audit_seal``, right after the transaction commits, in a transaction
    of its own. Holding the head until commit made every transaction that audits
    wait on one row per workflow, and deadlock with ones that lock rows the other
    way round (a decision and an execution of the same plan).
    """
    key = chain_key(workflow)
    event = AuditEvent(
        chain=key,
        workflow=workflow,
        actor=_user_or_none(actor),
        actor_label=actor_label_for(actor),
        action=action,
        object_type=type(obj).__name__ if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        data=data or {},
        created_at=timezone.now(),
        key_id=audit_keys().current_id,
    )
    sqlkit.insert([event])  # every auditing transaction writes one: no ORM compile
    _seal_on_commit(key)
    return event


def _seal_on_commit(key: str) -> None:
    """Seal the chain once the current transaction commits: one callback per chain
    per transaction, however many events it writes."""
    connection = transaction.get_connection()
    for entry in connection.run_on_commit:
        if getattr(entry[1], "audit_chain", None) == key:
            return

    def seal() -> None:
        if getattr(settings, "TENURE_AUDIT_SEAL", "background") == "commit":
            audit_seal(chain=key)
        else:
            _sealer.submit(key)

    seal.audit_chain = key  # type: ignore[attr-defined]
    transaction.on_commit(seal, robust=True)


class _Sealer:
    """Seals chains off the request path: a daemon thread per process, started on
    first use, that waits ``DELAY`` to gather what else commits meanwhile and then
    seals every chain named, so a burst of commits costs one seal, not one each (a
    busy worker writes an event every few milliseconds; a quarter of a second keeps
    the sealing, and its commit, out of their way).

    The events themselves are already committed with their change; only their
    place in the chain waits (tens of milliseconds). If the process exits first,
    ``atexit`` seals what is pending, and if it dies, the ``audit-seal`` beat job
    and ``verify_audit`` do.
    """

    DELAY = 0.25
    IDLE = 30.0

    def __init__(self) -> None:
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, key: str) -> None:
        with self._lock:
            self._pending.add(key)
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()  # a forked child starts its own
                self._thread = threading.Thread(target=self._run, name="audit-sealer", daemon=True)
                self._thread.start()
        self._wake.set()

    def flush(self) -> None:
        """Seal what is pending now, in the calling thread."""
        with self._lock:
            keys, self._pending = self._pending, set()
        for key in sorted(keys):
            try:
                audit_seal(chain=key)
            except Exception:  # the beat job seals it later
                logger.exception("sealing audit chain %s failed; the periodic job retries", key)
                db_connection.close_if_unusable_or_obsolete()

    def _run(self) -> None:
        while True:
            if not self._wake.wait(timeout=self.IDLE):
                db_connection.close()  # idle: give the connection back
                continue
            time.sleep(self.DELAY)
            self._wake.clear()
            self.flush()


_sealer = _Sealer()
atexit.register(lambda: _sealer.flush() if _sealer._pid == os.getpid() else None)


def audit_seal(*, chain: str | None = None, limit: int = 5000) -> int:
    """Give unsealed events their place in the chain: seq, previous hash and hash,
    in the order they were written. Returns how many were sealed.

    Runs after each auditing transaction commits, and periodically for events
    whose process died between commit and seal. Sealing one chain locks its head
    (and nothing else) for a few milliseconds.
    """
    if chain is not None:
        keys = [chain]
    else:
        unsealed = AuditEvent.objects.filter(seq__isnull=True).order_by()
        keys = sorted(set(unsealed.values_list("chain", flat=True)[:limit]))
    sealed = 0
    for key in keys:
        with transaction.atomic():
            head = governance_sql.audit_head_locked(key)
            if head is None:  # the chain's first event
                AuditChain.objects.get_or_create(key=key)
                head = governance_sql.audit_head_locked(key)
            head_id, seq, head_hash = head
            events = governance_sql.audit_unsealed(key, limit)
            current = audit_keys().current_id
            for event in events:
                event.key_id = event.key_id or current  # written before keys existed
                event.seq = seq + 1
                event.prev_hash = head_hash
                event.hash = event.compute_hash(key_for(event.key_id))
                seq, head_hash = event.seq, event.hash
            if events:
                governance_sql.audit_seal_write(
                    events, head_id=head_id, seq=seq, head_hash=head_hash
                )
            sealed += len(events)
    return sealed


@dataclass(frozen=True)
class BrokenLink:
    chain: str
    seq: int
    problem: str


ERR_TAIL_MISSING = "the chain ends at #{last} but its head says #{head}: events were deleted"
ERR_HEAD_MISMATCH = "the last event's hash does not match the chain head"
ERR_NO_HEAD = "events exist but the chain head is missing"
ERR_UNKEYED = "an unkeyed hash where the chain is keyed: the event was re-hashed without the key"


def audit_chain_keys(workflow_ids: Iterable[int] | None = None) -> list[str]:
    """Every chain with a head row or with events (a deleted head is tampering too)."""
    heads = AuditChain.objects.all()
    events = AuditEvent.objects.all()
    if workflow_ids is not None:
        keys = [f"workflow:{pk}" for pk in workflow_ids]
        heads, events = heads.filter(key__in=keys), events.filter(chain__in=keys)
    found = set(heads.values_list("key", flat=True))
    found |= set(events.order_by().values_list("chain", flat=True).distinct())
    return sorted(found)


def audit_verify(
    *, chain: str | None = None, chains: Iterable[str] | None = None
) -> list[BrokenLink]:
    """Walk every chain (or the ones named) and return the first broken link of each.

    The walk checks sequence, links and content; the head row then catches what a
    walk cannot see: events deleted at the end, or a forged last event re-hashed.
    """
    audit_seal(chain=chain)  # whatever a crash left unsealed
    if chain is not None:
        keys = [chain]
    elif chains is not None:
        keys = list(chains)
    else:
        keys = audit_chain_keys()
    heads = {h.key: h for h in AuditChain.objects.filter(key__in=keys)}
    broken: list[BrokenLink] = []
    for key in keys:
        expected_prev = "0" * 64
        expected_seq = 1
        last: AuditEvent | None = None
        problem_at: BrokenLink | None = None
        keyed_from = heads[key].keyed_from_seq if key in heads else 1
        sealed = AuditEvent.objects.filter(chain=key, seq__isnull=False)
        for event in sealed.order_by("seq").iterator(2000):
            problem = ""
            if event.seq != expected_seq:
                problem = f"sequence gap: expected {expected_seq}, found {event.seq}"
            elif event.prev_hash != expected_prev:
                problem = "previous-hash does not match the event before it"
            elif event.seq >= keyed_from and not event.key_id:
                problem = ERR_UNKEYED
            elif not _hash_matches(event):
                problem = "event content does not match its hash"
            if problem:
                problem_at = BrokenLink(chain=key, seq=event.seq, problem=problem)
                break
            expected_prev, expected_seq, last = event.hash, event.seq + 1, event
        if problem_at is None:
            problem_at = _head_problem(key, heads.get(key), last)
        if problem_at is not None:
            broken.append(problem_at)
    return broken + _checkpoint_problems(keys, already=[b.chain for b in broken])


def _hash_matches(event: AuditEvent) -> bool:
    try:
        expected = event.compute_hash(key_for(event.key_id))
    except LookupError:  # sealed under a key no longer configured: cannot vouch for it
        return False
    return hmac.compare_digest(expected, event.hash)


ERR_CHECKPOINT_GONE = (
    "the checkpoint {name} recorded #{seq}, which the log no longer has: events were deleted"
)
ERR_CHECKPOINT_DIFFERS = (
    "the checkpoint {name} recorded a different hash for #{seq}: the log was rewritten"
)
ERR_CHECKPOINT_INVALID = "the checkpoint {name} cannot be trusted: {problem}"


def _checkpoint_problems(keys: list[str], *, already: list[str]) -> list[BrokenLink]:
    """Hold each chain against every checkpoint written outside the database: every
    head a checkpoint recorded must still be in the log with the same hash."""
    wanted = set(keys) - set(already)
    if not wanted:
        return []
    problems: dict[str, BrokenLink] = {}
    for checkpoint in checkpoints_read():
        if not checkpoint.valid:
            problem = ERR_CHECKPOINT_INVALID.format(
                name=checkpoint.name, problem=checkpoint.problem
            )
            link = BrokenLink(chain=GLOBAL_CHAIN, seq=0, problem=problem)
            problems.setdefault(GLOBAL_CHAIN, link)
            continue
        recorded = {k: v for k, v in checkpoint.heads.items() if k in wanted}
        if not recorded:
            continue
        rows = AuditEvent.objects.filter(
            chain__in=list(recorded), seq__in=[seq for seq, _ in recorded.values()]
        ).values_list("chain", "seq", "hash")
        found = {
            chain: (seq, digest)
            for chain, seq, digest in rows
            if recorded.get(chain, (None,))[0] == seq
        }
        for chain, (seq, digest) in recorded.items():
            if chain in problems:
                continue
            if chain not in found:
                text = ERR_CHECKPOINT_GONE.format(name=checkpoint.name, seq=seq)
                problems[chain] = BrokenLink(chain=chain, seq=seq, problem=text)
            elif not hmac.compare_digest(found[chain][1], digest):
                text = ERR_CHECKPOINT_DIFFERS.format(name=checkpoint.name, seq=seq)
                problems[chain] = BrokenLink(chain=chain, seq=seq, problem=text)
    return list(problems.values())


def _head_problem(key: str, head: AuditChain | None, last: AuditEvent | None) -> BrokenLink | None:
    if head is None:
        return BrokenLink(chain=key, seq=last.seq, problem=ERR_NO_HEAD) if last else None
    last_seq = last.seq if last else 0
    if last_seq != head.seq:
        problem = ERR_TAIL_MISSING.format(last=last_seq, head=head.seq)
        return BrokenLink(chain=key, seq=last_seq + 1, problem=problem)
    if last is not None and last.hash != head.head_hash:
        return BrokenLink(chain=key, seq=last_seq, problem=ERR_HEAD_MISMATCH)
    return None


def audit_checkpoint(*, now: datetime | None = None) -> str | None:
    """Seal what is unsealed, then write every chain's head to the checkpoint sink
    outside the database; returns the checkpoint's name (None when the log is empty)."""
    audit_seal()
    return checkpoint_write(now=now)
