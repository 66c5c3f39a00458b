"""On PostgreSQL, the database itself keeps decisions append-only: it refuses every
UPDATE of a decision, and a DELETE unless it is an audited undo (a row for the
decision in the undone-decisions table) of a decision younger than 35 seconds (the
service allows 30; the rest is slack for a slow request).

One narrow exception: the demo's history seed moves its synthetic decisions back in
time. It sets ``tenure.backdate_decisions`` for its own transaction, and only the
tables' owner may do so (the app's role owns no table: ``manage.py db_app_role``),
and even then only ``created_at`` may change."""

from __future__ import annotations

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION reviews_decision_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF current_setting('tenure.backdate_decisions', true) = 'on'
           AND tenure_is_owner(TG_TABLE_NAME)
           AND (to_jsonb(NEW) - 'created_at') = (to_jsonb(OLD) - 'created_at') THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'decisions are append-only: UPDATE of decision %% refused', OLD.id;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM reviews_undonedecision u WHERE u.decision_id = OLD.id) THEN
        RAISE EXCEPTION 'decision %% may be removed only by an audited undo', OLD.id;
    END IF;
    IF OLD.created_at < now() - interval '35 seconds' THEN
        RAISE EXCEPTION 'decision %% is past its undo window; it stays', OLD.id;
    END IF;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER reviews_decision_append_only
    BEFORE UPDATE OR DELETE ON reviews_decision
    FOR EACH ROW EXECUTE FUNCTION reviews_decision_append_only();
"""
BACKWARD = """
DROP TRIGGER IF EXISTS reviews_decision_append_only ON reviews_decision;
DROP FUNCTION IF EXISTS reviews_decision_append_only();
"""


def forward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0004_missed_actions_belong_to_their_work_item"),
        ("governance", "0004_changes_only_through_services"),
    ]
    operations = [migrations.RunPython(forward, backward)]
