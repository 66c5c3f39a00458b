"""Run by tests/console/test_settings.py inside ``manage.py shell`` on the embedded
default (SQLite, Celery eager): the whole human-in-the-loop cycle through the
hand-written SQL paths, which must work on SQLite as well as on PostgreSQL."""

from django.contrib.auth import get_user_model
from django.test import Client

from agents.models import Execution, Proposal, WorkItem
from agents.runner import run_work_item
from demo.models import SandboxRefund
from governance.audit import audit_seal, audit_verify
from governance.models import ToolGrant, Workflow
from reviews.claims import claim_next
from reviews.services import proposal_decide

workflow = Workflow.objects.get(slug="refunds")
Workflow.objects.filter(pk=workflow.pk).update(autonomy_level="supervised")
ToolGrant.objects.filter(workflow=workflow).update(autonomy_level="supervised")
workflow.refresh_from_db()

for item in WorkItem.objects.filter(workflow=workflow, status="received"):
    run_work_item(work_item_id=item.pk)
proposed = Proposal.objects.filter(workflow=workflow, decided_at__isnull=True).count()
assert proposed, "the runs proposed nothing"

users = get_user_model().objects
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(users.get(username="rita"))
page = client.get("/w/refunds/queue/")
assert page.status_code == 200, page.status_code

decided = 0
for _ in range(200):
    progress = False
    for name in ("rita", "ravi"):
        reviewer = users.get(username=name)
        claim = claim_next(reviewer=reviewer, workflow=workflow)
        if claim is not None:
            proposal_decide(
                proposal_id=claim.proposal_id,
                reviewer=reviewer,
                claim_token=claim.token,
                verdict="accept",
                workflow=workflow,
            )
            decided += 1
            progress = True
    if not progress:
        break

executed = Execution.objects.filter(proposal__workflow=workflow, status="succeeded").count()
refunds = SandboxRefund.objects.count()
audit_seal()
broken = audit_verify()
print(f"CYCLE proposed={proposed} decided={decided} executed={executed} refunds={refunds}")
print(f"AUDIT broken={len(broken)}")
