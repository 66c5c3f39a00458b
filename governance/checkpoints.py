"""Audit checkpoints: the chains' heads, written on a schedule to a sink outside the
database, so that a database writer cannot rewrite or shorten the log unseen.

A checkpoint is one JSON document: when it was written, every chain's head (sequence
number and hash) and an HMAC over the rest under the current audit key. It is never
overwritten. ``audit_verify`` holds the log against every checkpoint: each head a
checkpoint recorded must still be in the log with the same hash. So a chain whose
tail was deleted and head rolled back, or whose events were edited and re-hashed,
fails verification even if the database itself looks consistent.

Sinks (``TENURE_AUDIT_CHECKPOINTS``):
- ``dir:/path`` (the default, ``dir:`` + ``data/audit-checkpoints``): an append-only
  directory; each file is created exclusively, read-only, and fsynced. Point it at
  storage the database's writers cannot reach (another host's mount, a WORM volume).
- ``s3://bucket/prefix``: an S3-compatible bucket with object lock; each checkpoint
  is put once with a compliance-mode retention (``TENURE_AUDIT_CHECKPOINT_RETAIN_DAYS``),
  so not even the bucket's owner can delete or overwrite it before it expires.
  ``TENURE_AUDIT_S3_ENDPOINT`` names a non-AWS endpoint; credentials come from the
  usual AWS environment variables.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.utils import timezone

from governance.audit_keys import audit_keys
from governance.models import AuditChain

ERR_BAD_SINK = "TENURE_AUDIT_CHECKPOINTS must be 'dir:/path' or 's3://bucket/prefix', not {spec!r}."
PREFIX = "checkpoint-"


@dataclass(frozen=True)
class Checkpoint:
    name: str
    written_at: datetime
    heads: dict[str, tuple[int, str]]  # chain -> (seq, head hash)
    valid: bool  # its MAC checks out under the key it names
    problem: str = ""


class Sink(Protocol):
    def put(self, name: str, body: bytes) -> None: ...

    def names(self) -> list[str]: ...

    def get(self, name: str) -> bytes: ...


class DirectorySink:
    """One file per checkpoint, created exclusively (never overwritten), read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def put(self, name: str, body: bytes) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)

    def names(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.name.startswith(PREFIX))

    def get(self, name: str) -> bytes:
        return (self.path / name).read_bytes()


class S3Sink:
    """An S3-compatible bucket with object lock (boto3). Each object is written once,
    with a compliance-mode retention."""

    def __init__(self, bucket: str, prefix: str) -> None:
        import boto3

        self.bucket, self.prefix = bucket, prefix.strip("/")
        endpoint = getattr(settings, "TENURE_AUDIT_S3_ENDPOINT", "") or None
        self.client = boto3.client("s3", endpoint_url=endpoint)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, name: str, body: bytes) -> None:
        days = int(getattr(settings, "TENURE_AUDIT_CHECKPOINT_RETAIN_DAYS", 400))
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(name),
            Body=body,
            ContentType="application/json",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=timezone.now() + timedelta(days=days),
            IfNoneMatch="*",  # never overwrite
        )

    def names(self) -> list[str]:
        out: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        prefix = self._key(PREFIX)
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            out += [obj["Key"].rsplit("/", 1)[-1] for obj in page.get("Contents", [])]
        return sorted(out)

    def get(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()


def sink() -> Sink:
    spec = getattr(settings, "TENURE_AUDIT_CHECKPOINTS", "") or (
        f"dir:{Path(settings.DATA_DIR) / 'audit-checkpoints'}"
    )
    if spec.startswith("dir:"):
        return DirectorySink(Path(spec[4:]))
    if spec.startswith("s3://"):
        bucket, _, prefix = spec[5:].partition("/")
        return S3Sink(bucket, prefix)
    raise ValueError(ERR_BAD_SINK.format(spec=spec))


def _mac(key: bytes, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def checkpoint_write(*, now: datetime | None = None) -> str | None:
    """Write every chain's sealed head to the sink; returns the checkpoint's name (None
    when the log is empty). ``governance.audit.audit_checkpoint`` seals first, so the
    heads are the whole log."""
    heads = {
        key: [seq, head]
        for key, seq, head in AuditChain.objects.filter(seq__gt=0)
        .order_by("key")
        .values_list("key", "seq", "head_hash")
    }
    if not heads:
        return None
    now = now or timezone.now()
    keys = audit_keys()
    body = {"written_at": now.isoformat(), "key_id": keys.current_id, "heads": heads}
    document = {**body, "mac": _mac(keys.current, body)}
    name = f"{PREFIX}{now.strftime('%Y%m%dT%H%M%S.%fZ')}.json"
    sink().put(name, json.dumps(document, sort_keys=True).encode())
    return name


def checkpoints_read() -> list[Checkpoint]:
    """Every checkpoint in the sink, oldest first, each with its MAC checked."""
    target = sink()
    out: list[Checkpoint] = []
    keys = audit_keys()
    for name in target.names():
        try:
            document = json.loads(target.get(name))
            body = {k: document[k] for k in ("written_at", "key_id", "heads")}
            written_at = datetime.fromisoformat(body["written_at"])
            heads = {key: (int(seq), str(head)) for key, (seq, head) in body["heads"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            out.append(Checkpoint(name, timezone.now(), {}, False, f"unreadable: {exc}"))
            continue
        try:
            expected = _mac(keys.key(body["key_id"]), body)
        except LookupError as exc:
            out.append(Checkpoint(name, written_at, heads, False, str(exc)))
            continue
        valid = hmac.compare_digest(expected, str(document.get("mac", "")))
        problem = "" if valid else "its MAC does not match: the checkpoint was altered"
        out.append(Checkpoint(name, written_at, heads, valid, problem))
    return out
