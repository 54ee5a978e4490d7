"""Issue 11: anonymous Idempotency-Keys belong to a browser session, saved-script names are
unique case-insensitively, status labels, and the trigger's statuses come from Status.

Rows the new constraints would refuse are settled first: an anonymous key without a session
could never be replayed under the new rule, so it is dropped (as is a second use of one key
in one session); a saved script whose name differs from an older one's only in case is
renamed "<name> (2)".
"""

from django.conf import settings
from django.db import migrations, models
from django.db.models.functions import Lower

from executions.models import TERMINAL, Status


def settle_idempotency_keys(apps, schema_editor):
    Execution = apps.get_model("executions", "Execution")
    anonymous = Execution.objects.filter(owner=None).exclude(idempotency_key="")
    anonymous.filter(session_key="").update(idempotency_key="")
    seen = set()
    for pk, session, key in anonymous.order_by("created_at", "id").values_list(
        "pk", "session_key", "idempotency_key"
    ):
        if (session, key) in seen:
            Execution.objects.filter(pk=pk).update(idempotency_key="")
        seen.add((session, key))


def settle_script_names(apps, schema_editor):
    SavedScript = apps.get_model("executions", "SavedScript")
    taken = set()
    for saved in SavedScript.objects.order_by("created_at", "id"):
        name, n = saved.name, 1
        while (saved.owner_id, name.lower()) in taken:
            n += 1
            name = f"{saved.name[:90]} ({n})"
        taken.add((saved.owner_id, name.lower()))
        if name != saved.name:
            SavedScript.objects.filter(pk=saved.pk).update(name=name)


def notify_function(queued, terminal):
    finished = ", ".join(f"'{status}'" for status in terminal)
    return f"""
CREATE OR REPLACE FUNCTION integr8s_notify() RETURNS trigger AS $$
BEGIN
    IF NEW.status = '{queued}' THEN
        PERFORM pg_notify('integr8s_queued', NEW.execution_id::text);
    ELSIF NEW.status IN ({finished}) THEN
        PERFORM pg_notify('integr8s_finished', NEW.execution_id::text);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
"""


def on_postgresql(sql):
    def operation(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return operation


class Migration(migrations.Migration):
    dependencies = [
        ("executions", "0006_fair_scheduling_caller"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="execution",
            name="execution_idempotency_anonymous",
        ),
        migrations.RunPython(settle_idempotency_keys, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="execution",
            constraint=models.UniqueConstraint(
                condition=models.Q(models.Q(("idempotency_key", ""), _negated=True), ("owner__isnull", True)),
                fields=("session_key", "idempotency_key"),
                name="execution_idempotency_session",
            ),
        ),
        migrations.RemoveConstraint(
            model_name="savedscript",
            name="savedscript_owner_name",
        ),
        migrations.RunPython(settle_script_names, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="savedscript",
            constraint=models.UniqueConstraint(Lower("name"), models.F("owner"), name="savedscript_owner_name_ci"),
        ),
        migrations.AlterField(
            model_name="execution",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("completed", "Completed"),
                    ("failed", "Failed"),
                    ("timeout", "Timed out"),
                    ("cancelled", "Cancelled"),
                ],
                default="queued",
                max_length=10,
            ),
        ),
        # The trigger of 0004, its statuses now taken from Execution.Status (ACTIVE, TERMINAL).
        migrations.RunPython(
            on_postgresql(notify_function(Status.QUEUED.value, [str(s) for s in TERMINAL])),
            on_postgresql(
                notify_function("queued", ["completed", "failed", "timeout", "cancelled"])
            ),
        ),
    ]
