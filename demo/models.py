"""The demo's sandbox systems of record: an order system, a directory and a CRM.

The demo tools act on these tables (their real side effects, kept in the database).
The tables kept the names they had when they lived in the agents app.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q


class SandboxOrder(models.Model):
    number = models.CharField(max_length=32, unique=True)
    customer_name = models.CharField(max_length=200)
    customer_email = models.EmailField()
    total = models.DecimalField(max_digits=10, decimal_places=2)
    refunded = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0"))
    status = models.CharField(max_length=32, default="delivered")
    items = models.JSONField(default=list, encoder=DjangoJSONEncoder)
    placed_at = models.DateTimeField()

    class Meta:
        db_table = "agents_sandboxorder"  # its name from before the move
        constraints = [
            models.CheckConstraint(
                condition=Q(refunded__lte=models.F("total")) & Q(refunded__gte=0),
                name="sandboxorder_refund_within_total",
            ),
        ]

    def __str__(self) -> str:
        return self.number


class SandboxRefund(models.Model):
    order = models.ForeignKey(SandboxOrder, on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    reason = models.CharField(max_length=300)
    idempotency_key = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "agents_sandboxrefund"  # its name from before the move

    def __str__(self) -> str:
        return f"{self.order.number} -{self.amount}"


class SandboxMessage(models.Model):
    """An outbound customer message 'sent' by the demo (kept, never delivered)."""

    to = models.EmailField()
    subject = models.CharField(max_length=300)
    body = models.TextField()
    idempotency_key = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "agents_sandboxmessage"  # its name from before the move

    def __str__(self) -> str:
        return f"to {self.to}: {self.subject}"


class DirectoryGroup(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    privileged = models.BooleanField(default=False)

    class Meta:
        db_table = "agents_directorygroup"  # its name from before the move

    def __str__(self) -> str:
        return self.name


class DirectoryUser(models.Model):
    username = models.CharField(max_length=100, unique=True)
    full_name = models.CharField(max_length=200)
    email = models.EmailField()
    department = models.CharField(max_length=100)
    manager = models.CharField(max_length=100, blank=True)
    active = models.BooleanField(default=True)
    groups = models.ManyToManyField(
        DirectoryGroup, through="GroupMembership", related_name="members"
    )

    class Meta:
        db_table = "agents_directoryuser"  # its name from before the move

    def __str__(self) -> str:
        return self.username


class GroupMembership(models.Model):
    user = models.ForeignKey(DirectoryUser, on_delete=models.CASCADE)
    group = models.ForeignKey(DirectoryGroup, on_delete=models.CASCADE)
    granted_by_key = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "agents_groupmembership"  # its name from before the move
        constraints = [
            models.UniqueConstraint(fields=["user", "group"], name="membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.group}"


class CrmContact(models.Model):
    name = models.CharField(max_length=200)
    email = models.EmailField()
    company = models.CharField(max_length=200, blank=True)
    phone = models.CharField(max_length=40, blank=True)
    merged_into = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="merged_from"
    )
    merge_key = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "agents_crmcontact"  # its name from before the move
        indexes = [models.Index(fields=["email"])]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"
