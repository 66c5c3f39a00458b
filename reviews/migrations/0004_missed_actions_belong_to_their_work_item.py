"""A missed action belongs to its work item from the moment it is reported; its item
outcome is set once the human's account of the item is complete."""

import django.db.models.deletion
from django.db import migrations, models


def work_item_from_outcome(apps, schema_editor):
    HumanAction = apps.get_model("reviews", "HumanAction")
    for action in HumanAction.objects.filter(work_item__isnull=True).select_related("outcome"):
        action.work_item_id = action.outcome.work_item_id
        action.save(update_fields=["work_item"])


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0007_prices_and_untrusted_outputs"),
        ("reviews", "0003_item_outcomes_undo_reports"),
    ]

    operations = [
        migrations.AddField(
            model_name="humanaction",
            name="work_item",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="missed_actions",
                to="agents.workitem",
            ),
        ),
        migrations.RunPython(work_item_from_outcome, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="humanaction",
            name="work_item",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="missed_actions",
                to="agents.workitem",
            ),
        ),
        migrations.AlterField(
            model_name="humanaction",
            name="outcome",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="missed",
                to="reviews.itemoutcome",
            ),
        ),
    ]
