"""The audit log holds against someone who can write to the database: a keyed chain,
checkpoints outside the database, and triggers a non-owner role cannot get around."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from governance import audit_keys as keys_module
from governance.audit import audit_append, audit_checkpoint, audit_seal, audit_verify
from governance.audit_keys import key_for, new_key, parse
from governance.checkpoints import checkpoints_read
from governance.models import AuditChain, AuditEvent
from tests.console.test_audit import tamper
from tests.factories import WorkflowFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def checkpoints(settings, tmp_path):
    settings.TENURE_AUDIT_CHECKPOINTS = f"dir:{tmp_path / 'checkpoints'}"
    return tmp_path / "checkpoints"


@pytest.fixture
def chain():
    workflow = WorkflowFactory(slug="audited")
    with transaction.atomic():
        for i in range(6):
            audit_append(action=f"step{i}", actor="system", workflow=workflow, data={"i": i})
    audit_seal()
    key = f"workflow:{workflow.pk}"
    assert AuditChain.objects.get(key=key).seq == 6
    return key


def _rehash_from(chain: str, start: int, key: bytes | None) -> None:
    """What a forger does after editing event ``start``: recompute every hash from
    there on and move the head to match (with ``key`` if they hold one)."""
    prev = AuditEvent.objects.get(chain=chain, seq=start - 1).hash if start > 1 else "0" * 64
    for event in AuditEvent.objects.filter(chain=chain, seq__gte=start).order_by("seq"):
        event.prev_hash = prev
        if key is None:  # no key: the forger can only guess plain SHA-256
            event.key_id = ""
        digest = event.compute_hash(key)
        tamper(
            "UPDATE console_auditevent SET prev_hash = %s, hash = %s, key_id = %s WHERE id = %s",
            prev,
            digest,
            event.key_id,
            event.pk,
        )
        prev = digest
    last = AuditEvent.objects.filter(chain=chain).order_by("-seq").first()
    tamper(
        "UPDATE console_auditchain SET seq = %s, head_hash = %s WHERE key = %s",
        last.seq,
        prev,
        chain,
    )


def test_events_are_sealed_with_a_keyed_hash(chain):
    event = AuditEvent.objects.get(chain=chain, seq=1)
    assert event.key_id == "test-1"
    assert event.hash == event.compute_hash(key_for("test-1"))
    unkeyed = AuditEvent(
        **{f.attname: getattr(event, f.attname) for f in AuditEvent._meta.concrete_fields}
    )
    unkeyed.key_id = ""
    assert event.hash != unkeyed.compute_hash()


def test_a_chain_recomputed_after_an_edit_without_the_key_fails(chain, checkpoints):
    tamper(
        "UPDATE console_auditevent SET data = %s WHERE chain = %s AND seq = 3", '{"i": 99}', chain
    )
    _rehash_from(chain, 3, key=None)
    [broken] = audit_verify(chains=[chain])
    assert broken.seq == 3


def test_a_chain_recomputed_with_the_key_fails_against_a_checkpoint(chain, checkpoints):
    assert audit_checkpoint() is not None
    tamper(
        "UPDATE console_auditevent SET data = %s WHERE chain = %s AND seq = 3", '{"i": 99}', chain
    )
    _rehash_from(chain, 3, key=key_for("test-1"))  # even a forger holding the key
    assert [b for b in audit_verify(chains=[chain]) if b.problem.startswith("the checkpoint")]
    [broken] = audit_verify(chains=[chain])
    assert "the log was rewritten" in broken.problem


def test_a_truncated_tail_with_its_head_rolled_back_fails_against_a_checkpoint(chain, checkpoints):
    audit_checkpoint()
    tamper("DELETE FROM console_auditevent WHERE chain = %s AND seq > 4", chain)
    fourth = AuditEvent.objects.get(chain=chain, seq=4)
    tamper(
        "UPDATE console_auditchain SET seq = 4, head_hash = %s WHERE key = %s", fourth.hash, chain
    )
    [broken] = audit_verify(chains=[chain])
    assert broken.seq == 6
    assert "no longer has: events were deleted" in broken.problem


def test_without_a_checkpoint_the_same_truncation_looks_consistent(chain, checkpoints):
    """Why checkpoints exist: the database alone cannot tell."""
    tamper("DELETE FROM console_auditevent WHERE chain = %s AND seq > 4", chain)
    fourth = AuditEvent.objects.get(chain=chain, seq=4)
    tamper(
        "UPDATE console_auditchain SET seq = 4, head_hash = %s WHERE key = %s", fourth.hash, chain
    )
    assert audit_verify(chains=[chain]) == []


def test_a_checkpoint_is_never_overwritten_and_an_altered_one_is_reported(chain, checkpoints):
    name = audit_checkpoint()
    path = checkpoints / name
    assert oct(path.stat().st_mode & 0o777) == "0o444"
    document = json.loads(path.read_text())
    document["heads"][chain] = [2, "0" * 64]
    path.chmod(0o644)
    path.write_text(json.dumps(document))
    [checkpoint] = checkpoints_read()
    assert not checkpoint.valid
    broken = audit_verify(chains=[chain])
    assert any("cannot be trusted" in b.problem for b in broken)


def test_the_head_only_moves_forward_and_the_log_cannot_be_truncated_by_the_app_role(chain):
    role = "tenure_app_test"
    with connection.cursor() as cursor:
        cursor.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
            f"THEN CREATE ROLE {role} NOLOGIN; END IF; END $$"
        )
        tables = "console_auditevent, console_auditchain"
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {role}")
    attempts = [
        (
            "UPDATE console_auditchain SET seq = seq - 1 WHERE key = %s",
            [chain],
            "only moves forward",
        ),
        ("DELETE FROM console_auditchain WHERE key = %s", [chain], "only moves forward"),
        ("DELETE FROM console_auditevent WHERE chain = %s", [chain], "append-only"),
        ("TRUNCATE console_auditevent", [], "permission denied"),
        ("ALTER TABLE console_auditevent DISABLE TRIGGER ALL", [], "must be owner"),
        ("DROP TRIGGER console_auditevent_append_only ON console_auditevent", [], "must be owner"),
    ]
    for statement, params, message in attempts:
        with pytest.raises(DatabaseError, match=message):
            _as_role(role, statement, params)


def _as_role(role: str, statement: str, params: list) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {role}")
        cursor.execute(statement, params)


def test_events_sealed_under_a_rotated_key_still_verify(chain, settings):
    settings.TENURE_AUDIT_KEYS = f"test-2:{new_key()},{settings.TENURE_AUDIT_KEYS}"
    settings.TENURE_AUDIT_KEY_ID = "test-2"
    keys_module.audit_keys.cache_clear()
    try:
        workflow_id = int(chain.split(":")[1])
        from governance.models import Workflow

        with transaction.atomic():
            audit_append(
                action="after-rotation",
                actor="system",
                workflow=Workflow.objects.get(pk=workflow_id),
            )
        audit_seal()
        assert AuditEvent.objects.get(chain=chain, seq=7).key_id == "test-2"
        assert audit_verify(chains=[chain]) == []
        # A key dropped from the list leaves its events unverifiable, and says so.
        settings.TENURE_AUDIT_KEYS = settings.TENURE_AUDIT_KEYS.split(",")[0]
        keys_module.audit_keys.cache_clear()
        [broken] = audit_verify(chains=[chain])
        assert broken.seq == 1
    finally:
        keys_module.audit_keys.cache_clear()


def test_a_short_or_malformed_key_is_refused_with_its_reason():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="shorter than 32 bytes"):
        parse("k1:c2hvcnQ=", "")
    with pytest.raises(ImproperlyConfigured, match="does not list"):
        parse(f"k1:{new_key()}", "k2")


# --- an S3-compatible bucket with object lock ----------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(settings, monkeypatch):
    """moto's S3 server on loopback, with a bucket that has object lock on."""
    import boto3

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=endpoint)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket="audit", ObjectLockEnabledForBucket=True)
            break
        except Exception:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.2)
    settings.TENURE_AUDIT_S3_ENDPOINT = endpoint
    settings.TENURE_AUDIT_CHECKPOINTS = "s3://audit/tenure"
    yield client
    server.kill()
    server.wait(timeout=10)


def test_checkpoints_go_to_a_locked_bucket_and_catch_a_truncation(chain, s3):
    from botocore.exceptions import ClientError

    name = audit_checkpoint()
    key = f"tenure/{name}"
    assert s3.head_object(Bucket="audit", Key=key)["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket="audit", Key=key, Body=b"{}", IfNoneMatch="*")
    version = s3.list_object_versions(Bucket="audit", Prefix=key)["Versions"][0]["VersionId"]
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket="audit", Key=key, VersionId=version)
    tamper("DELETE FROM console_auditevent WHERE chain = %s AND seq > 4", chain)
    fourth = AuditEvent.objects.get(chain=chain, seq=4)
    tamper(
        "UPDATE console_auditchain SET seq = 4, head_hash = %s WHERE key = %s", fourth.hash, chain
    )
    [broken] = audit_verify(chains=[chain])
    assert "no longer has" in broken.problem
