"""Fill what aa-stripe left empty, so upgraded rows behave like new ones.

- StripeWebhook.event_type / stripe_created_at come from the stored event (the handlers and
  the admin read them);
- plans aa-stripe created at Stripe used the local primary key as Stripe's plan id;
- aa-stripe's plan currency defaulted to "USD": Stripe and the validators use lower case.
"""

from datetime import UTC, datetime

from django.db import migrations, models
from django.db.models import F, Q
from django.db.models.functions import Cast, Lower


def fill_webhooks(apps, schema_editor):
    webhook_model = apps.get_model("aa_stripe", "StripeWebhook")
    rows = webhook_model.objects.filter(Q(event_type="") | Q(stripe_created_at__isnull=True))
    batch = []
    for row in rows.only("id", "raw_data", "event_type", "stripe_created_at").iterator(chunk_size=500):
        data = row.raw_data if isinstance(row.raw_data, dict) else {}
        event_type, created = data.get("type"), data.get("created")
        if not row.event_type and isinstance(event_type, str):
            row.event_type = event_type[:255]
        if row.stripe_created_at is None and isinstance(created, int) and 0 < created < 2**37:
            row.stripe_created_at = datetime.fromtimestamp(created, tz=UTC)
        batch.append(row)
        if len(batch) >= 500:
            webhook_model.objects.bulk_update(batch, ["event_type", "stripe_created_at"])
            batch = []
    webhook_model.objects.bulk_update(batch, ["event_type", "stripe_created_at"])


def fill_plans_and_currencies(apps, schema_editor):
    plan_model = apps.get_model("aa_stripe", "StripeSubscriptionPlan")
    coupon_model = apps.get_model("aa_stripe", "StripeCoupon")
    plan_model.objects.filter(is_created_at_stripe=True, stripe_plan_id="").update(
        stripe_plan_id=Cast(F("id"), output_field=models.CharField(max_length=255))
    )
    plan_model.objects.exclude(currency=Lower("currency")).update(currency=Lower("currency"))
    coupon_model.objects.filter(currency__isnull=False).exclude(currency=Lower("currency")).update(
        currency=Lower("currency")
    )


class Migration(migrations.Migration):
    dependencies = [("aa_stripe", "0029_customer_source_clocks")]

    operations = [
        migrations.RunPython(fill_webhooks, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(fill_plans_and_currencies, migrations.RunPython.noop, elidable=True),
    ]
