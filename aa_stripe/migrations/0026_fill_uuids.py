"""Give every existing charge and subscription its own UUID (the idempotency-key base).

The column was added without a unique index because a callable default gives every
existing row the same value during AddField; each row gets a fresh UUID here, then the
next migration makes the column unique.
"""

import uuid

from django.db import migrations


def fill_uuids(apps, schema_editor):
    for model_name in ("StripeCharge", "StripeSubscription"):
        model = apps.get_model("aa_stripe", model_name)
        rows = list(model.objects.only("pk"))
        for row in rows:
            row.uuid = uuid.uuid4()
        model.objects.bulk_update(rows, ["uuid"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [("aa_stripe", "0025_refunds_and_unique_stripe_ids")]

    operations = [migrations.RunPython(fill_uuids, migrations.RunPython.noop, elidable=True)]
