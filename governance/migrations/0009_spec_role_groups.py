"""The role groups exist after ``migrate``: reviewer, manager, ops and admin, with the
global permissions each role holds (``governance.permissions.GLOBAL_ROLE_PERMS``).
Reviewers and managers hold none globally: they are granted workflows one by one.
Idempotent: groups that exist keep their members and gain what they lack."""

from django.db import migrations

WORKFLOW_PERMS = {
    "view_workflow": "Can view workflow",
    "review_workflow": "Can review the workflow's proposals and escalations",
    "manage_workflow": "Can change the workflow's grants, thresholds and autonomy",
    "operate_workflow": "Can pause and resume the workflow",
    "export_workflow": "Can download every reviewer's decisions on the workflow",
}
# Frozen here: a migration must not follow later edits of the permissions module.
GLOBAL_ROLE_PERMS = {
    "reviewer": (),
    "manager": (),
    "ops": ("view_workflow", "operate_workflow"),
    "admin": (
        "view_workflow",
        "review_workflow",
        "manage_workflow",
        "operate_workflow",
        "export_workflow",
    ),
}


def role_groups_create(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="governance", model="workflow")
    perms = {
        codename: Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )[0]
        for codename, name in WORKFLOW_PERMS.items()
    }
    for role, codenames in GLOBAL_ROLE_PERMS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*[perms[codename] for codename in codenames])


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0008_chat_chat_identity"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(role_groups_create, migrations.RunPython.noop),
    ]
