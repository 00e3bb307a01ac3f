"""The parse queue's index, built without blocking the webhook view where the database can.

On PostgreSQL ``CREATE INDEX CONCURRENTLY`` (outside a transaction, hence ``atomic = False``): the
webhook view keeps storing events while a large table is indexed. Elsewhere the index is built as
Django builds it (SQLite: a partial index; MySQL/MariaDB: no partial indexes, Django leaves the
condition out).
"""

from django.db import migrations, models

INDEX = models.Index(
    condition=models.Q(("is_parsed", False)),
    fields=["stripe_created_at", "created", "id"],
    name="aa_stripe_webhook_queue",
)


def add_index(apps, schema_editor):
    model = apps.get_model("aa_stripe", "StripeWebhook")
    if schema_editor.connection.vendor == "postgresql":
        sql = str(INDEX.create_sql(model, schema_editor, concurrently=True))
        schema_editor.execute(
            sql.replace("CREATE INDEX CONCURRENTLY", "CREATE INDEX CONCURRENTLY IF NOT EXISTS")
        )
    else:
        schema_editor.add_index(model, INDEX)


def remove_index(apps, schema_editor):
    model = apps.get_model("aa_stripe", "StripeWebhook")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(str(INDEX.remove_sql(model, schema_editor, concurrently=True)))
    else:
        schema_editor.remove_index(model, INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("aa_stripe", "0043_webhook_leases"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="stripewebhook", index=INDEX)],
            database_operations=[migrations.RunPython(add_index, remove_index)],
        ),
    ]
