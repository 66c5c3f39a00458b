"""Per-workflow connector credentials, encrypted at rest.

Each workflow's agent acts as its own service principal, so its connector
secrets belong to the workflow. A secret is encrypted with Fernet (AES-128-CBC
plus HMAC-SHA256) before it reaches the database, and is never shown again
after saving: screens show the fingerprint and version, and only connectors
call ``credential_get``.

The key is ``settings.TENURE_CREDENTIALS_KEY`` (a Fernet key; several,
comma-separated, to rotate the key itself: the first encrypts, all decrypt).
When it is empty, a key is derived from ``SECRET_KEY`` with HKDF-SHA256, so
the embedded console works with no setup; changing ``SECRET_KEY`` then makes
stored credentials unreadable, so production should set its own key.

The ciphertext holds the workflow and name with the secret, so a row copied
onto another workflow's credential does not decrypt there.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from agents.models import ConnectorCredential
from governance.audit import audit_append
from governance.models import Workflow

MAX_SECRET_CHARS = 8192
HKDF_SALT = b"tenure.credentials"
HKDF_INFO = b"fernet-key-v1"
AUDIT_CREATED = "credential.created"
AUDIT_ROTATED = "credential.rotated"

ERR_NAME = "A credential name is a slug: lower-case letters, digits, '-' and '_'."
ERR_EMPTY = "The secret is empty."
ERR_TOO_LONG = f"The secret is longer than {MAX_SECRET_CHARS} characters."
ERR_NOT_FOUND = "No credential {name!r} is stored for this workflow."
ERR_UNREADABLE = (
    "Credential {name!r} cannot be decrypted with the configured key "
    "(was TENURE_CREDENTIALS_KEY or SECRET_KEY changed?)."
)
ERR_WRONG_OWNER = "Credential {name!r} was encrypted for another workflow or name."
ERR_BAD_KEY = "TENURE_CREDENTIALS_KEY must be Fernet keys (urlsafe base64 of 32 bytes)."


class CredentialError(Exception):
    pass


def _derived_key(secret_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


def _fernet() -> MultiFernet:
    configured = str(getattr(settings, "TENURE_CREDENTIALS_KEY", "") or "")
    keys = [key.strip() for key in configured.split(",") if key.strip()]
    if not keys:
        keys = [_derived_key(settings.SECRET_KEY).decode()]
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as error:
        raise CredentialError(ERR_BAD_KEY) from error


def credential_fingerprint(secret: str) -> str:
    """The last 8 hex characters of the secret's sha256: enough to tell keys apart."""
    return hashlib.sha256(secret.encode()).hexdigest()[-8:]


def _envelope(workflow_id: int, name: str, secret: str) -> bytes:
    return json.dumps({"w": workflow_id, "n": name, "s": secret}).encode()


def _encrypt(workflow_id: int, name: str, secret: str) -> bytes:
    return _fernet().encrypt(_envelope(workflow_id, name, secret))


def _check_name(name: str) -> str:
    if not name or slugify(name) != name or len(name) > 100:
        raise CredentialError(ERR_NAME)
    return name


def credential_set(
    *, workflow: Workflow, name: str, secret: str, actor: Any
) -> ConnectorCredential:
    """Store a new credential, or rotate an existing one (its version goes up).
    The audit event records name, version and fingerprint, never the secret."""
    _check_name(name)
    if not secret:
        raise CredentialError(ERR_EMPTY)
    if len(secret) > MAX_SECRET_CHARS:
        raise CredentialError(ERR_TOO_LONG)
    ciphertext = _encrypt(workflow.pk, name, secret)
    fingerprint = credential_fingerprint(secret)
    with transaction.atomic():
        credential = (
            ConnectorCredential.objects.select_for_update()
            .filter(workflow=workflow, name=name)
            .first()
        )
        if credential is None:
            credential, created = ConnectorCredential.objects.get_or_create(
                workflow=workflow,
                name=name,
                defaults={"ciphertext": ciphertext, "fingerprint": fingerprint, "version": 1},
            )
            if not created:  # Another request created it first: rotate theirs.
                credential = ConnectorCredential.objects.select_for_update().get(pk=credential.pk)
        else:
            created = False
        if not created:
            credential.ciphertext = ciphertext
            credential.fingerprint = fingerprint
            credential.version += 1
            credential.save(update_fields=["ciphertext", "fingerprint", "version", "rotated_at"])
        audit_append(
            action=AUDIT_CREATED if created else AUDIT_ROTATED,
            actor=actor,
            workflow=workflow,
            obj=credential,
            data={"name": name, "version": credential.version, "fingerprint": fingerprint},
        )
    return credential


def credential_get(*, workflow: Workflow | int, name: str) -> str:
    """The decrypted secret, for connectors only: never render or log it."""
    workflow_id = int(getattr(workflow, "pk", workflow))
    ciphertext = (
        ConnectorCredential.objects.filter(workflow_id=workflow_id, name=name)
        .values_list("ciphertext", flat=True)
        .first()
    )
    if ciphertext is None:
        raise CredentialError(ERR_NOT_FOUND.format(name=name))
    try:
        envelope = json.loads(_fernet().decrypt(bytes(ciphertext)))
    except (InvalidToken, ValueError) as error:
        raise CredentialError(ERR_UNREADABLE.format(name=name)) from error
    if envelope.get("w") != workflow_id or envelope.get("n") != name:
        raise CredentialError(ERR_WRONG_OWNER.format(name=name))
    return str(envelope["s"])


def credential_display(credential: ConnectorCredential) -> dict[str, Any]:
    """What a screen may show about a credential."""
    return {
        "name": credential.name,
        "version": credential.version,
        "fingerprint": credential.fingerprint,
        "rotated_at": credential.rotated_at,
    }
