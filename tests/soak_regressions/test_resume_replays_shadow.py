"""Found by the soak (bench/soak.py): resuming a workflow executes its shadow history.

In shadow mode an accepted proposal stays ``accepted`` for good: the human did the
work in their own system. ``plans_redispatch`` (a resume hook) re-dispatches every
run of the workflow with an accepted or edited proposal, ever, and
``plan_dispatch_ready`` judges executability by the tool's level *now*. So once a
tool has been promoted to supervised, a pause and resume moves every past
shadow-mode acceptance of it back to ``executing`` and enqueues ``execute_action``
for it: each refund a human already made by hand is made again. In the soak
(40,000 bulk-loaded shadow decisions) the resume request ran for minutes inside
one transaction holding the workflow row, and the kill switch's resume timed out.
"""

from __future__ import annotations

import pytest

from agents.models import Proposal, WorkItem
from agents.services import held_work_restart
from governance.models import AutonomyLevel, ToolGrant
from governance.services import workflow_pause, workflow_resume
from reviews.claims import claim_proposal
from reviews.services import proposal_decide
from tests.callbacks import task_callbacks
from tests.factories import ToolGrantFactory
from tests.reviews.factories import plan_factory


@pytest.mark.django_db
def test_resume_does_not_execute_proposals_accepted_in_shadow_mode(
    workflow, reviewer, ops, django_capture_on_commit_callbacks
):
    ToolGrantFactory(workflow=workflow, tool="create_refund")
    (proposal,) = plan_factory(workflow=workflow, steps=1, autonomy_level=AutonomyLevel.SHADOW)
    claim = claim_proposal(reviewer=reviewer, proposal=proposal)
    proposal_decide(
        proposal_id=proposal.pk, reviewer=reviewer, claim_token=claim.token, verdict="accept"
    )
    item = WorkItem.objects.get(pk=proposal.work_item_id)
    assert item.status == WorkItem.Status.RESOLVED  # shadow: recorded, nothing executes
    # Later the evidence clears the gate and the tool moves up to supervised.
    workflow.autonomy_level = AutonomyLevel.SUPERVISED
    workflow.save()
    ToolGrant.objects.filter(workflow=workflow).update(autonomy_level=AutonomyLevel.SUPERVISED)

    workflow_pause(workflow=workflow, actor=ops, reason="drill")
    workflow_resume(workflow=workflow, actor=ops, reason="drill over")
    # What the resume's task does, in a worker:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert held_work_restart(workflow_id=workflow.pk) == 0

    item.refresh_from_db()
    proposal.refresh_from_db()
    assert item.status == WorkItem.Status.RESOLVED
    assert proposal.status == Proposal.Status.ACCEPTED
    assert task_callbacks(callbacks) == []  # no execute_action for a decision made in shadow mode
