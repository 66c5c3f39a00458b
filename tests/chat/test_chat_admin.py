"""Chat accounts are linked to Tenure users, and workflows to chat channels, by admins,
with an audit event for every change."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.models import AuditEvent, ChatChannel, ChatIdentity
from tests.factories import UserFactory, WorkflowFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = UserFactory(username="root")
    user.is_superuser = user.is_staff = True
    user.save()
    client.force_login(user)
    return client


def test_linking_and_unlinking_a_slack_account_is_audited(admin_client):
    rhea = UserFactory(username="rhea")
    response = admin_client.post(
        reverse("admin:governance_chatidentity_add"),
        {"platform": "slack", "external_user_id": "U0RHEA", "user": rhea.pk},
    )
    assert response.status_code == 302
    identity = ChatIdentity.objects.get(external_user_id="U0RHEA")
    assert identity.user == rhea
    linked = AuditEvent.objects.get(action="chat.identity_linked")
    assert linked.data == {"platform": "slack", "external_user_id": "U0RHEA", "user": rhea.pk}

    admin_client.post(
        reverse("admin:governance_chatidentity_delete", args=[identity.pk]), {"post": "yes"}
    )
    assert not ChatIdentity.objects.exists()
    assert AuditEvent.objects.filter(action="chat.identity_unlinked").count() == 1


def test_one_slack_account_is_one_user(admin_client):
    ChatIdentity.objects.create(external_user_id="U0RHEA", user=UserFactory(username="rhea"))
    response = admin_client.post(
        reverse("admin:governance_chatidentity_add"),
        {"platform": "slack", "external_user_id": "U0RHEA", "user": UserFactory().pk},
    )
    assert response.status_code == 200  # the form, with its error
    assert ChatIdentity.objects.count() == 1
    assert not AuditEvent.objects.filter(action="chat.identity_linked").exists()


def test_a_channel_is_audited_without_its_secret_url(admin_client):
    workflow = WorkflowFactory(slug="refunds")
    url = "https://hooks.slack.com/services/T0/B0/very-secret-token"
    admin_client.post(
        reverse("admin:governance_chatchannel_add"), {"workflow": workflow.pk, "webhook_url": url}
    )
    assert ChatChannel.objects.get(workflow=workflow).webhook_url == url
    event = AuditEvent.objects.get(action="chat.channel_set")
    assert event.data == {"host": "hooks.slack.com"}
    assert "very-secret-token" not in str(event.data)
