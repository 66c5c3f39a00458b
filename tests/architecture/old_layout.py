"""Run as a script against a scratch database (``DATABASE_URL``): ``old`` migrates it
to the last migrations of the old layout (every model in console and agents) and
writes rows the way the old code did, content types and per-object grants included;
``new`` migrates it to the current layout and prints what the current models read,
as JSON. tests/architecture/test_migrate_old_layout.py drives both."""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings_test")
sys.path.insert(0, os.getcwd())

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402

OLD_LEAVES = [
    ("console", "0007_metric_day"),
    ("agents", "0005_dashboard_live_slice_indexes"),
    ("reviews", "0002_two_approvers"),
    ("guardian", None),
    ("sessions", None),
    ("admin", None),
]


def old() -> None:
    executor = MigrationExecutor(connection)
    targets = []
    for app, name in OLD_LEAVES:
        if name is None:
            name = max(n for a, n in executor.loader.graph.leaf_nodes() if a == app)
        targets.append((app, name))
    executor.migrate(targets)
    apps = executor.loader.project_state(targets).apps
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    User = apps.get_model("auth", "User")
    Workflow = apps.get_model("console", "Workflow")
    ToolGrant = apps.get_model("console", "ToolGrant")
    MetricDay = apps.get_model("console", "MetricDay")
    SandboxOrder = apps.get_model("agents", "SandboxOrder")
    UserObjectPermission = apps.get_model("guardian", "UserObjectPermission")
    # What the old code's post_migrate made: content types and permissions under console.
    workflow_type = ContentType.objects.create(app_label="console", model="workflow")
    ContentType.objects.create(app_label="agents", model="sandboxorder")
    review = Permission.objects.create(
        name="Can review the workflow's proposals and escalations",
        content_type=workflow_type,
        codename="review_workflow",
    )
    rita = User.objects.create(username="rita", password="!")
    refunds = Workflow.objects.create(slug="refunds", name="Refunds", autonomy_level="supervised")
    ToolGrant.objects.create(workflow=refunds, tool="create_refund", autonomy_level="supervised")
    UserObjectPermission.objects.create(
        user=rita, permission=review, content_type=workflow_type, object_pk=str(refunds.pk)
    )
    MetricDay.objects.create(workflow=refunds, day="2026-11-01", decisions=7, accepted=5)
    SandboxOrder.objects.create(
        number="A-1001",
        customer_name="Ann",
        customer_email="ann@example.test",
        total=Decimal("120.00"),
        placed_at="2026-11-01T00:00:00Z",
    )
    # An audit event sealed as the old code sealed it: plain SHA-256, no key id.
    from django.utils import timezone

    from governance.models import AuditEvent as CurrentEvent

    AuditEvent = apps.get_model("console", "AuditEvent")
    AuditChain = apps.get_model("console", "AuditChain")
    event = CurrentEvent(
        chain=f"workflow:{refunds.pk}",
        seq=1,
        workflow_id=refunds.pk,
        actor_label="system",
        action="workflow.created",
        data={"slug": "refunds"},
        created_at=timezone.now(),
        prev_hash="0" * 64,
    )
    event.hash = event.compute_hash()
    AuditEvent.objects.create(
        **{f: getattr(event, f) for f in ("chain", "seq", "actor_label", "action", "data")},
        workflow_id=refunds.pk,
        created_at=event.created_at,
        prev_hash=event.prev_hash,
        hash=event.hash,
    )
    AuditChain.objects.create(key=event.chain, seq=1, head_hash=event.hash)


def new() -> None:
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType

    from demo.models import SandboxOrder
    from evidence.models import MetricDay
    from governance.audit import audit_verify
    from governance.models import ToolGrant, Workflow
    from governance.permissions import REVIEW

    refunds = Workflow.objects.get(slug="refunds")
    rita = get_user_model().objects.get(username="rita")
    labels = sorted(
        f"{t.app_label}.{t.model}"
        for t in ContentType.objects.filter(model__in=["workflow", "sandboxorder"])
    )
    print(
        json.dumps(
            {
                "workflow": [refunds.slug, refunds.autonomy_level],
                "grants": list(ToolGrant.objects.values_list("tool", "autonomy_level")),
                "metric_day": list(MetricDay.objects.values_list("decisions", "accepted")),
                "orders": list(SandboxOrder.objects.values_list("number", flat=True)),
                "content_types": labels,
                "rita_reviews_refunds": rita.has_perm(REVIEW, refunds),
                "audit_broken": [str(b) for b in audit_verify()],
            }
        )
    )


if __name__ == "__main__":
    {"old": old, "new": new}[sys.argv[1]]()
