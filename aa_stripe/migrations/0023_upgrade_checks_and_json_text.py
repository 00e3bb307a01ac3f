"""Before this library changes aa-stripe's schema: refuse half-migrated histories, clean JSON text.

1. A database that ran only some of aa-stripe's 22 migrations has neither their full schema nor
   ours; Django would silently skip our squash there, so stop with instructions instead.
2. aa-stripe kept JSON in TEXT columns that could hold '' or text that is not JSON (its coupon
   admin form wrote metadata=''). The next migration turns them into real JSON columns, which
   PostgreSQL (jsonb) and SQLite (JSON_VALID check) refuse for such text: rewrite it first.
"""

import json

from django.db import migrations
from django.db.migrations.recorder import MigrationRecorder

UPSTREAM_MIGRATIONS = 22

# table -> {column: JSON text to use when the stored text is empty or not JSON}
JSON_TEXT_COLUMNS = {
    "aa_stripe_stripecustomer": {
        "stripe_response": "{}",
        "stripe_js_response": "{}",
        "sources": "[]",
    },
    "aa_stripe_stripecharge": {"stripe_response": "{}"},
    "aa_stripe_stripecoupon": {"stripe_response": "{}", "metadata": "{}"},
    "aa_stripe_stripesubscriptionplan": {"stripe_response": "{}", "source": "{}", "metadata": "{}"},
    "aa_stripe_stripesubscription": {"stripe_response": "{}", "metadata": "{}"},
    "aa_stripe_stripewebhook": {"raw_data": "{}"},
}


def refuse_partial_upstream_history(apps, schema_editor):
    recorder = MigrationRecorder(schema_editor.connection)
    upstream = [
        name
        for app, name in recorder.applied_migrations()
        if app == "aa_stripe"
        and name[:4].isdigit()
        and int(name[:4]) <= UPSTREAM_MIGRATIONS
        and "squashed" not in name
    ]
    if 0 < len(upstream) < UPSTREAM_MIGRATIONS:
        raise RuntimeError(
            f"This database ran {len(upstream)} of aa-stripe's {UPSTREAM_MIGRATIONS} migrations. "
            "Install aa-stripe==0.13.0, run `manage.py migrate aa_stripe` to finish its history, "
            "then install aa-stripe-graphql and migrate again."
        )


def clean_json_text(value, fallback):
    if value is None:
        return fallback
    text = value.replace("\\u0000", "")  # valid JSON, but jsonb refuses the NUL escape
    if not text.strip():
        return fallback
    try:
        json.loads(text)
    except ValueError:
        return fallback
    return text


def rewrite_invalid_json_text(apps, schema_editor):
    connection = schema_editor.connection
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table, columns in JSON_TEXT_COLUMNS.items():
            for column, fallback in columns.items():
                cursor.execute(f"SELECT {quote('id')}, {quote(column)} FROM {quote(table)}")
                changes = [
                    (cleaned, pk)
                    for pk, value in cursor.fetchall()
                    if (cleaned := clean_json_text(value, fallback)) != value
                ]
                if changes:
                    cursor.executemany(
                        f"UPDATE {quote(table)} SET {quote(column)} = %s WHERE {quote('id')} = %s", changes
                    )


class Migration(migrations.Migration):
    dependencies = [("aa_stripe", "0001_squashed_0022_aa_stripe_0_13")]

    operations = [
        migrations.RunPython(refuse_partial_upstream_history, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(rewrite_invalid_json_text, migrations.RunPython.noop, elidable=True),
    ]
