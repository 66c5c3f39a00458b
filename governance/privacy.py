"""Personal data: what a workflow declares personal, how it is stored, how it is erased.

A workflow's ``data_policy`` declares which payload fields name a data subject
(``subject_fields``: customer id, e-mail, phone), which other payload fields are
personal (``personal_fields``), which tool arguments are (``personal_arguments``:
``{tool: [argument, ...]}``), and how many days each kind of record keeps personal
values (``retention_days``: ``{payloads, arguments, traces, packets, exports}``, 0 =
kept until erased).

Personal values are stored as tokens, ``[pii:<subject id>:<ciphertext>]``: AES-GCM
under the subject's own 256-bit data key, with a nonce derived from the value (equal
values give equal tokens, so hashes of arguments and diffs stay stable). The data
key is stored wrapped (AES-GCM) by the master key ``TENURE_PRIVACY_KEY``, held
outside the database. Erasing a subject deletes the wrapped key and the identifier
look-ups: every token of theirs, in whatever row or copy, can no longer be read.
Rows the database keeps append-only (decisions, audit events) need no update.

A ``Vault`` is the subject's values for one work item: ``protect`` replaces each
plaintext value (exact, or inside longer text) with its token before a write, and
``reveal`` turns tokens back into values for the roles that see them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from governance.models import DataSubject, SubjectIdentifier, Workflow

KINDS = ("payloads", "arguments", "traces", "packets", "exports")
POLICY_KEYS = ("subject_fields", "personal_fields", "personal_arguments", "retention_days")
ERASED = "[erased]"
EXPIRED = "[expired]"
MASKED = "[personal]"
# Plaintext shorter than this is only replaced where it is a whole value, never
# inside longer text ("42" would otherwise replace every 42 in a trace).
MIN_SUBSTRING = 4
MAX_RETENTION_DAYS = 36500

ERR_KEY = "TENURE_PRIVACY_KEY must be base64 of at least 32 bytes."
ERR_POLICY = "The data policy {problem}."

TOKEN_RE = re.compile(r"\[pii:(\d+):([A-Za-z0-9_-]{24,})\]")
_WRAP_AAD = b"tenure-subject-key"


# --- keys ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MasterKeys:
    wrap: bytes
    lookup: bytes


def _embedded_key() -> str:
    path = Path(settings.DATA_DIR) / "privacy_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


@cache
def master_keys() -> MasterKeys:
    encoded = getattr(settings, "TENURE_PRIVACY_KEY", "") or _embedded_key()
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError as exc:
        raise ImproperlyConfigured(ERR_KEY) from exc
    if len(raw) < 32:
        raise ImproperlyConfigured(ERR_KEY)
    # Two keys from one secret: one wraps data keys, one keys the identifier look-ups.
    return MasterKeys(
        wrap=hmac.new(raw, b"wrap", hashlib.sha256).digest(),
        lookup=hmac.new(raw, b"lookup", hashlib.sha256).digest(),
    )


def _wrap(data_key: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(master_keys().wrap).encrypt(nonce, data_key, _WRAP_AAD)


def _unwrap(wrapped: bytes) -> bytes:
    wrapped = bytes(wrapped)
    return AESGCM(master_keys().wrap).decrypt(wrapped[:12], wrapped[12:], _WRAP_AAD)


def normalise_identifier(value: Any) -> str:
    return str(value).strip().lower()


def identifier_lookup(workflow_id: int, value: Any) -> str:
    message = f"{workflow_id}:{normalise_identifier(value)}".encode()
    return hmac.new(master_keys().lookup, message, hashlib.sha256).hexdigest()


# --- tokens ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encrypt(subject_id: int, data_key: bytes, plaintext: str) -> str:
    # Deterministic (the nonce is a MAC of the value under the data key): the same value
    # of the same subject always gives the same token.
    nonce = hmac.new(data_key, plaintext.encode(), hashlib.sha256).digest()[:12]
    aad = str(subject_id).encode()
    sealed = AESGCM(data_key).encrypt(nonce, plaintext.encode(), aad)
    return f"[pii:{subject_id}:{_b64(nonce + sealed)}]"


def _decrypt(subject_id: int, data_key: bytes, body: str) -> str | None:
    raw = _unb64(body)
    try:
        return AESGCM(data_key).decrypt(raw[:12], raw[12:], str(subject_id).encode()).decode()
    except (InvalidTag, ValueError):
        return None


def subject_ids_in(value: Any) -> set[int]:
    """The subjects whose tokens a value (str, dict, list) carries."""
    found: set[int] = set()
    _walk_strings(value, lambda s: found.update(int(m.group(1)) for m in TOKEN_RE.finditer(s)))
    return found


def _walk_strings(value: Any, visit: Any) -> None:
    if isinstance(value, str):
        visit(value)
    elif isinstance(value, dict):
        for item in value.values():
            _walk_strings(item, visit)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk_strings(item, visit)


def map_strings(value: Any, change: Any) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {key: map_strings(item, change) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [map_strings(item, change) for item in value]
    return value


def _data_keys(subject_ids: Iterable[int]) -> dict[int, bytes | None]:
    ids = set(subject_ids)
    if not ids:
        return {}
    keys: dict[int, bytes | None] = dict.fromkeys(ids)
    for pk, wrapped in DataSubject.objects.filter(pk__in=ids).values_list("pk", "wrapped_key"):
        keys[pk] = _unwrap(wrapped) if wrapped is not None else None
    return keys


def reveal(value: Any, *, erased: str = ERASED) -> Any:
    """``value`` with every token decrypted; a token whose key is gone reads ``erased``."""
    keys = _data_keys(subject_ids_in(value))
    if not keys:
        return value

    def one(match: re.Match[str]) -> str:
        subject_id = int(match.group(1))
        key = keys.get(subject_id)
        if key is None:
            return erased
        plain = _decrypt(subject_id, key, match.group(2))
        return erased if plain is None else plain

    return map_strings(value, lambda s: TOKEN_RE.sub(one, s) if "[pii:" in s else s)


def mask(value: Any, *, replacement: str = MASKED) -> Any:
    """``value`` with every token shown as ``[personal]``: for readers who need no values."""
    return map_strings(value, lambda s: TOKEN_RE.sub(replacement, s) if "[pii:" in s else s)


def expire(value: Any, subject_ids: Iterable[int] | None = None) -> Any:
    """``value`` with tokens (of ``subject_ids``, or all) replaced by ``[expired]``."""
    wanted = None if subject_ids is None else set(subject_ids)

    def one(match: re.Match[str]) -> str:
        if wanted is None or int(match.group(1)) in wanted:
            return EXPIRED
        return match.group(0)

    return map_strings(value, lambda s: TOKEN_RE.sub(one, s) if "[pii:" in s else s)


# --- the workflow's declaration ------------------------------------------------------


@dataclass(frozen=True)
class DataPolicy:
    subject_fields: tuple[str, ...] = ()
    personal_fields: tuple[str, ...] = ()
    personal_arguments: dict[str, tuple[str, ...]] = field(default_factory=dict)
    retention_days: dict[str, int] = field(default_factory=dict)

    @property
    def declared(self) -> bool:
        return bool(self.subject_fields)

    def retention(self, kind: str) -> int:
        return int(self.retention_days.get(kind, 0) or 0)


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValidationError(
            ERR_POLICY.format(problem=f"needs {where} as a list of names"), code="data_policy"
        )
    return sorted({v.strip() for v in value})


def policy_clean(value: Any) -> dict[str, Any]:
    """A data policy validated, in its stored (JSON) form."""
    if not isinstance(value, dict):
        raise ValidationError(ERR_POLICY.format(problem="must be an object"), code="data_policy")
    unknown = set(value) - set(POLICY_KEYS)
    if unknown:
        problem = f"has unknown keys {sorted(unknown)}; known: {list(POLICY_KEYS)}"
        raise ValidationError(ERR_POLICY.format(problem=problem), code="data_policy")
    cleaned: dict[str, Any] = {}
    for key in ("subject_fields", "personal_fields"):
        if key in value:
            cleaned[key] = _names(value[key], key)
    if "personal_arguments" in value:
        args = value["personal_arguments"]
        if not isinstance(args, dict):
            problem = "needs personal_arguments as {tool: [argument, ...]}"
            raise ValidationError(ERR_POLICY.format(problem=problem), code="data_policy")
        cleaned["personal_arguments"] = {
            str(tool): _names(names, f"personal_arguments.{tool}")
            for tool, names in sorted(args.items())
        }
    if "retention_days" in value:
        days = value["retention_days"]
        if not isinstance(days, dict) or set(days) - set(KINDS):
            problem = f"needs retention_days as {{kind: days}} with kinds {list(KINDS)}"
            raise ValidationError(ERR_POLICY.format(problem=problem), code="data_policy")
        out = {}
        for kind, n in days.items():
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_RETENTION_DAYS:
                problem = f"keeps {kind} for {n!r} days: a whole number 0 to {MAX_RETENTION_DAYS}"
                raise ValidationError(ERR_POLICY.format(problem=problem), code="data_policy")
            out[kind] = n
        cleaned["retention_days"] = out
    return cleaned


def policy_of(workflow: Workflow) -> DataPolicy:
    raw = workflow.data_policy if isinstance(workflow.data_policy, dict) else {}
    return DataPolicy(
        subject_fields=tuple(raw.get("subject_fields") or ()),
        personal_fields=tuple(raw.get("personal_fields") or ()),
        personal_arguments={
            tool: tuple(names) for tool, names in (raw.get("personal_arguments") or {}).items()
        },
        retention_days=dict(raw.get("retention_days") or {}),
    )


def _keeps_longer(old: int, new: int) -> bool:
    # 0 keeps until erased: longer than any number of days.
    return (new == 0 and old != 0) or (old != 0 and new > old)


def policy_widens(before: Any, after: Any) -> bool:
    """Whether a policy change keeps more personal data: a field or argument no longer
    declared personal, or a kind of record kept longer. Such a change waits for a second
    manager (governance.change_control)."""
    old = policy_clean(before or {})
    new = policy_clean(after or {})
    for key in ("subject_fields", "personal_fields"):
        if set(old.get(key, [])) - set(new.get(key, [])):
            return True
    old_args, new_args = old.get("personal_arguments", {}), new.get("personal_arguments", {})
    for tool, names in old_args.items():
        if set(names) - set(new_args.get(tool, [])):
            return True
    old_days, new_days = old.get("retention_days", {}), new.get("retention_days", {})
    return any(_keeps_longer(old_days.get(k, 0), new_days.get(k, 0)) for k in KINDS)


# --- subjects and vaults ----------------------------------------------------------------


@dataclass
class Vault:
    """One work item's personal values: plaintext -> token, for one subject."""

    subject_id: int | None = None
    data_key: bytes | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    def seal(self, plaintext: str) -> str:
        if self.subject_id is None or self.data_key is None or not plaintext:
            return plaintext
        token = self.tokens.get(plaintext)
        if token is None:
            token = encrypt(self.subject_id, self.data_key, plaintext)
            self.tokens[plaintext] = token
        return token

    def _protect_str(self, text: str) -> str:
        token = self.tokens.get(text)
        if token is not None:
            return token
        for plain in sorted(self.tokens, key=len, reverse=True):
            if len(plain) >= MIN_SUBSTRING and plain in text:
                text = text.replace(plain, self.tokens[plain])
        return text

    def protect(self, value: Any) -> Any:
        """``value`` with this subject's known personal values replaced by their tokens."""
        if not self.tokens:
            return value
        return map_strings(value, self._protect_str)

    def protect_arguments(self, tool: str, arguments: dict[str, Any], policy: DataPolicy) -> Any:
        """Tool arguments protected: known values anywhere, and the arguments the
        workflow declares personal for this tool sealed even when the value is new."""
        declared = set(policy.personal_arguments.get(tool, ()))
        out = {}
        for name, value in arguments.items():
            if name in declared and isinstance(value, str | int) and not isinstance(value, bool):
                text = str(value)
                out[name] = text if TOKEN_RE.fullmatch(text) else self.seal(text)
            else:
                out[name] = value
        return self.protect(out)

    def reveal(self, value: Any) -> Any:
        if self.subject_id is None:
            return value
        return reveal(value)


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return text or None
    return None


def _declared_values(payload: Any, names: Iterable[str]) -> list[str]:
    """Scalar values found under the given keys anywhere in the payload."""
    wanted = set(names)
    found: list[str] = []
    stack = [payload]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if key in wanted:
                    if isinstance(item, list):
                        found.extend(t for t in map(_scalar_text, item) if t)
                    elif (text := _scalar_text(item)) is not None:
                        found.append(text)
                elif isinstance(item, dict | list):
                    stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)
    return found


def _lock_lookups(lookups: list[str]) -> None:
    """Two first sights of one person at once must not make two subjects (the second
    would have no identifier to be found, and erased, by): each identifier's look-up is
    locked until the intake's transaction ends, in a fixed order (PostgreSQL)."""
    if connection.vendor != "postgresql":
        return  # SQLite runs one writing transaction at a time
    with connection.cursor() as cursor:
        for lookup in sorted(lookups):
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [lookup])


def subject_for(workflow: Workflow, identifiers: list[str]) -> tuple[int, bytes] | None:
    """The subject the identifiers name (created on first sight), and its data key.
    None for an erased subject's key: new data for them starts a new subject."""
    lookups = list(dict.fromkeys(identifier_lookup(workflow.pk, v) for v in identifiers))
    _lock_lookups(lookups)
    for _attempt in range(3):
        known = dict(
            SubjectIdentifier.objects.filter(workflow=workflow, lookup__in=lookups)
            .filter(subject__wrapped_key__isnull=False)
            .values_list("lookup", "subject_id")
        )
        try:
            with transaction.atomic():
                if known:
                    subject = DataSubject.objects.get(pk=next(iter(known.values())))
                    data_key = _unwrap(subject.wrapped_key)
                    DataSubject.objects.filter(pk=subject.pk).update(last_seen_at=timezone.now())
                else:
                    data_key = AESGCM.generate_key(bit_length=256)
                    subject = DataSubject.objects.create(
                        workflow=workflow, wrapped_key=_wrap(data_key)
                    )
                missing = [lk for lk in lookups if lk not in known]
                SubjectIdentifier.objects.bulk_create(
                    [
                        SubjectIdentifier(workflow=workflow, subject=subject, lookup=lk)
                        for lk in missing
                    ],
                    ignore_conflicts=True,
                )
            return subject.pk, data_key
        except IntegrityError:  # a concurrent first sight of the same person: read again
            continue
    return None


def payload_protect(workflow: Workflow, payload: Any) -> tuple[Any, Vault]:
    """The payload as stored: declared personal values replaced by tokens of the subject
    its identifiers name, with the vault that did it (to protect the title too).
    Unchanged when the workflow declares no subject fields or the payload names none."""
    policy = policy_of(workflow)
    if not policy.declared or not isinstance(payload, dict):
        return payload, Vault()
    identifiers = _declared_values(payload, policy.subject_fields)
    if not identifiers:
        return payload, Vault()
    found = subject_for(workflow, identifiers)
    if found is None:
        return payload, Vault()
    vault = Vault(subject_id=found[0], data_key=found[1])
    for value in [*identifiers, *_declared_values(payload, policy.personal_fields)]:
        vault.seal(value)
    return vault.protect(payload), vault


def vault_for(stored: Any) -> Vault:
    """The vault of a stored payload: its subject, key and values, read from its tokens."""
    ids = subject_ids_in(stored)
    if len(ids) != 1:
        return Vault()
    subject_id = next(iter(ids))
    data_key = _data_keys(ids).get(subject_id)
    if data_key is None:
        return Vault(subject_id=subject_id)
    vault = Vault(subject_id=subject_id, data_key=data_key)

    def learn(text: str) -> None:
        for match in TOKEN_RE.finditer(text):
            plain = _decrypt(subject_id, data_key, match.group(2))
            if plain is not None:
                vault.tokens[plain] = match.group(0)

    _walk_strings(stored, learn)
    return vault


def subjects_find(identifier: str, workflow: Workflow | None = None) -> list[DataSubject]:
    """The live subjects an identifier names (in one workflow, or in any)."""
    workflows = [workflow] if workflow is not None else list(Workflow.objects.all())
    lookups = {identifier_lookup(w.pk, identifier): w.pk for w in workflows}
    subject_ids = SubjectIdentifier.objects.filter(lookup__in=list(lookups)).values_list(
        "subject_id", flat=True
    )
    return list(DataSubject.objects.filter(pk__in=list(subject_ids), erased_at__isnull=True))


def subject_values(subject: DataSubject, stored: Iterable[Any]) -> set[str]:
    """The plaintext values of the subject's tokens found in the stored values."""
    if subject.wrapped_key is None:
        return set()
    data_key = _unwrap(subject.wrapped_key)
    values: set[str] = set()

    def learn(text: str) -> None:
        for match in TOKEN_RE.finditer(text):
            if int(match.group(1)) == subject.pk:
                plain = _decrypt(subject.pk, data_key, match.group(2))
                if plain:
                    values.add(plain)

    for value in stored:
        _walk_strings(value, learn)
    return values


def subject_shred(subject: DataSubject) -> None:
    """Destroy the subject's key and identifier look-ups (inside the caller's transaction)."""
    SubjectIdentifier.objects.filter(subject=subject).delete()
    DataSubject.objects.filter(pk=subject.pk).update(wrapped_key=None, erased_at=timezone.now())
