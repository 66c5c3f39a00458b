"""The audit log's keys: held outside the database, named by a key id, rotatable.

Each sealed event records the id of the key whose HMAC chains it. Someone who can
write to the database but does not hold the key cannot recompute a valid chain after
an edit; the checkpoints written outside the database (``governance.checkpoints``)
catch the rest (a deleted tail with the head rolled back).

Configuration: ``TENURE_AUDIT_KEYS`` lists every key still needed to verify the log
(``"id1:base64key,id2:base64key"``) and ``TENURE_AUDIT_KEY_ID`` names the one new
events are sealed with. To rotate, add a new key (``manage.py audit_keys new``), make it
current, and keep the old ones listed for as long as their events are kept. The
embedded default, with nothing configured, keeps one generated key in
``data/audit_keys`` (readable by its owner only).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

ERR_FORMAT = "TENURE_AUDIT_KEYS must be 'id:base64key[,id:base64key...]': {problem}."
ERR_CURRENT = "TENURE_AUDIT_KEY_ID names {key_id!r}, which TENURE_AUDIT_KEYS does not list."
ERR_UNKNOWN = "The audit key {key_id!r} is not configured; this event cannot be verified."
MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class AuditKeys:
    current_id: str
    keys: dict[str, bytes]

    @property
    def current(self) -> bytes:
        return self.keys[self.current_id]

    def key(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise LookupError(ERR_UNKNOWN.format(key_id=key_id)) from None


def new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(MIN_KEY_BYTES)).decode()


def parse(spec: str, current_id: str) -> AuditKeys:
    keys: dict[str, bytes] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        key_id, sep, encoded = part.partition(":")
        if not sep or not key_id or not encoded:
            raise ImproperlyConfigured(ERR_FORMAT.format(problem=f"{part[:20]!r}…"))
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError as exc:
            raise ImproperlyConfigured(ERR_FORMAT.format(problem=str(exc))) from exc
        if len(key) < MIN_KEY_BYTES:
            problem = f"the key {key_id!r} is shorter than {MIN_KEY_BYTES} bytes"
            raise ImproperlyConfigured(ERR_FORMAT.format(problem=problem))
        keys[key_id] = key
    if not keys:
        raise ImproperlyConfigured(ERR_FORMAT.format(problem="no key"))
    current_id = current_id or next(iter(keys))
    if current_id not in keys:
        raise ImproperlyConfigured(ERR_CURRENT.format(key_id=current_id))
    return AuditKeys(current_id=current_id, keys=keys)


def _embedded_spec() -> str:
    """One key generated on first use under the data directory (the embedded default)."""
    path = Path(settings.DATA_DIR) / "audit_keys"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"local-1:{new_key()}\n")
        path.chmod(0o600)
    return path.read_text().strip()


@cache
def audit_keys() -> AuditKeys:
    spec = getattr(settings, "TENURE_AUDIT_KEYS", "") or _embedded_spec()
    return parse(spec, getattr(settings, "TENURE_AUDIT_KEY_ID", ""))


def key_for(key_id: str) -> bytes | None:
    """The key an event was sealed with (None for an unkeyed, older event)."""
    return audit_keys().key(key_id) if key_id else None
