"""On PostgreSQL, the database itself refuses UPDATE and DELETE on the audit log."""

from __future__ import annotations

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION console_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only (%% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER console_auditevent_append_only
    BEFORE UPDATE OR DELETE ON console_auditevent
    FOR EACH ROW EXECUTE FUNCTION console_auditevent_append_only();
"""
BACKWARD = """
DROP TRIGGER IF EXISTS console_auditevent_append_only ON console_auditevent;
DROP FUNCTION IF EXISTS console_auditevent_append_only();
"""


def forward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("console", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
