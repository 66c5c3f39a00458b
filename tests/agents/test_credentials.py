from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.fernet import Fernet
from django.test import override_settings

from agents.credentials import (
    AUDIT_CREATED,
    AUDIT_ROTATED,
    CredentialError,
    credential_display,
    credential_fingerprint,
    credential_get,
    credential_set,
)
from agents.models import ConnectorCredential
from governance.audit import audit_verify
from governance.models import AuditEvent

SECRET = "whsec_live_7Hq9xY2pLmN4vR8tK1"
ROTATED = "whsec_live_ZZ00yy11XX22ww33"


def _stored(workflow, name="refund-api") -> ConnectorCredential:
    return ConnectorCredential.objects.get(workflow=workflow, name=name)


def test_a_secret_is_encrypted_at_rest_and_readable_by_connectors(workflow, manager):
    credential = credential_set(workflow=workflow, name="refund-api", secret=SECRET, actor=manager)

    stored = bytes(_stored(workflow).ciphertext)
    assert SECRET.encode() not in stored
    assert base64.urlsafe_b64encode(SECRET.encode()) not in stored
    assert credential.version == 1
    assert credential.fingerprint == hashlib.sha256(SECRET.encode()).hexdigest()[-8:]
    assert credential_get(workflow=workflow, name="refund-api") == SECRET
    assert credential_get(workflow=workflow.pk, name="refund-api") == SECRET


def test_rotation_bumps_the_version_and_replaces_the_secret(workflow, manager):
    credential_set(workflow=workflow, name="refund-api", secret=SECRET, actor=manager)
    first_ciphertext = bytes(_stored(workflow).ciphertext)

    rotated = credential_set(workflow=workflow, name="refund-api", secret=ROTATED, actor=manager)

    assert rotated.version == 2
    assert rotated.fingerprint == credential_fingerprint(ROTATED)
    assert bytes(_stored(workflow).ciphertext) != first_ciphertext
    assert credential_get(workflow=workflow, name="refund-api") == ROTATED
    assert ConnectorCredential.objects.filter(workflow=workflow).count() == 1


def test_audit_events_never_hold_the_secret(workflow, manager):
    credential_set(workflow=workflow, name="refund-api", secret=SECRET, actor=manager)
    credential_set(workflow=workflow, name="refund-api", secret=ROTATED, actor=manager)

    events = list(AuditEvent.objects.filter(workflow=workflow).order_by("id"))
    assert [event.action for event in events] == [AUDIT_CREATED, AUDIT_ROTATED]
    assert events[1].data == {
        "name": "refund-api",
        "version": 2,
        "fingerprint": credential_fingerprint(ROTATED),
    }
    assert events[0].actor == manager
    for event in events:
        dumped = json.dumps(event.data)
        assert SECRET not in dumped
        assert ROTATED not in dumped
    assert audit_verify() == []


def test_the_display_shows_no_secret(workflow, manager):
    credential = credential_set(workflow=workflow, name="refund-api", secret=SECRET, actor=manager)
    shown = credential_display(credential)
    assert SECRET not in str(shown)
    assert set(shown) == {"name", "version", "fingerprint", "rotated_at"}


def test_credentials_belong_to_their_workflow(workflow, other_workflow, manager):
    credential_set(workflow=workflow, name="refund-api", secret=SECRET, actor=manager)
    with pytest.raises(CredentialError, match="No credential 'refund-api'"):
        credential_get(workflow=other_workflow, name="refund-api")


def test_a_ciphertext_copied_to_another_workflow_does_not_decrypt_there(
    workflow, other_workflow, manager
):
    credential_set(workflow=workflow, name="refund-api", secret=SECRET, actor=manager)
    credential_set(workflow=other_workflow, name="refund-api", secret=ROTATED, actor="system")
    ConnectorCredential.objects.filter(workflow=other_workflow).update(
        ciphertext=_stored(workflow).ciphertext
    )

    with pytest.raises(CredentialError, match="encrypted for another workflow"):
        credential_get(workflow=other_workflow, name="refund-api")


def test_a_configured_key_is_used_and_a_changed_key_cannot_decrypt(workflow, manager):
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(TENURE_CREDENTIALS_KEY=first):
        credential_set(workflow=workflow, name="refund-api", secret=SECRET, actor=manager)
        assert credential_get(workflow=workflow, name="refund-api") == SECRET
    # Without the key (derived from SECRET_KEY instead) it is unreadable...
    with pytest.raises(CredentialError, match="cannot be decrypted"):
        credential_get(workflow=workflow, name="refund-api")
    # ...and key rotation lists the new key first, the old one after.
    with override_settings(TENURE_CREDENTIALS_KEY=f"{second},{first}"):
        assert credential_get(workflow=workflow, name="refund-api") == SECRET


def test_a_bad_configured_key_is_a_clear_error(workflow, manager):
    with (
        override_settings(TENURE_CREDENTIALS_KEY="not-a-fernet-key"),
        pytest.raises(CredentialError, match="must be Fernet keys"),
    ):
        credential_set(workflow=workflow, name="refund-api", secret=SECRET, actor=manager)


@pytest.mark.parametrize(
    ("name", "secret", "message"),
    [
        ("Refund API", SECRET, "credential name is a slug"),
        ("", SECRET, "credential name is a slug"),
        ("refund-api", "", "secret is empty"),
        ("refund-api", "x" * 9000, "longer than"),
    ],
)
def test_bad_input_is_refused(workflow, manager, name, secret, message):
    with pytest.raises(CredentialError, match=message):
        credential_set(workflow=workflow, name=name, secret=secret, actor=manager)
    assert not ConnectorCredential.objects.exists()
    assert not AuditEvent.objects.filter(workflow=workflow).exists()
