"""Fill the columns 0040 added (billing period, trial, the subscription's payment method) of existing
subscriptions from the Stripe object each row already stores; nothing else changes.

Not atomic: on PostgreSQL a migration's transaction would hold the table's locks while every row is
read and written, blocking webhooks and requests; here each batch of 500 commits on its own, and
running it again (after an interruption) writes the same values.
"""

from datetime import UTC, datetime

from django.db import migrations


def _when(value):
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def backfill_from_stored_objects(apps, schema_editor):
    db = schema_editor.connection.alias
    StripeSubscription = apps.get_model("aa_stripe", "StripeSubscription")
    names = [
        "current_period_start",
        "current_period_end",
        "trial_start",
        "trial_end",
        "default_payment_method",
    ]
    batch = []
    for row in (
        StripeSubscription.objects.using(db)
        .exclude(stripe_response={})
        .only("pk", "stripe_response")
        .iterator(chunk_size=500)
    ):
        data = row.stripe_response or {}
        items = (data.get("items") or {}).get("data") or [{}]
        first = items[0] if isinstance(items[0], dict) else {}
        row.current_period_start = _when(
            first.get("current_period_start") or data.get("current_period_start")
        )
        row.current_period_end = _when(first.get("current_period_end") or data.get("current_period_end"))
        row.trial_start = _when(data.get("trial_start"))
        row.trial_end = _when(data.get("trial_end"))
        method = data.get("default_payment_method")
        row.default_payment_method = (method.get("id") if isinstance(method, dict) else method) or ""
        batch.append(row)
        if len(batch) >= 500:
            StripeSubscription.objects.using(db).bulk_update(batch, names)
            batch = []
    if batch:
        StripeSubscription.objects.using(db).bulk_update(batch, names)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("aa_stripe", "0040_subscriptions_to_prices"),
    ]

    operations = [
        migrations.RunPython(backfill_from_stored_objects, migrations.RunPython.noop, elidable=True),
    ]
