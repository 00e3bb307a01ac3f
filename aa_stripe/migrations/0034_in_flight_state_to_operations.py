"""Charges and refunds in flight when this version is installed become journal operations.

An older version recorded an attempt whose answer never came as ``attempt_started_at`` (charges)
and ``pending_refund_amount`` (refunds). Their exact parameters were not stored, so the operations
made here are marked ``needs_lookup``: they are looked up at Stripe (by the charge's uuid and
attempt, or the refund's amount) before anything is sent again, and only sent, under a new key,
when Stripe has nothing.
"""

import uuid

from django.db import migrations


def _metadata(charge):
    return {"charge_uuid": str(charge.uuid), "attempt": str(charge.attempt)}


def in_flight_to_operations(apps, schema_editor):
    db = schema_editor.connection.alias
    StripeCharge = apps.get_model("aa_stripe", "StripeCharge")
    StripeOperation = apps.get_model("aa_stripe", "StripeOperation")
    ContentType = apps.get_model("contenttypes", "ContentType")
    charges = StripeCharge.objects.using(db)
    in_flight = charges.filter(
        attempt_started_at__isnull=False, is_charged=False, charge_attempt_failed=False
    )
    pending = charges.filter(pending_refund_amount__isnull=False)
    if not in_flight.exists() and not pending.exists():
        return
    content_type, _ = ContentType.objects.using(db).get_or_create(app_label="aa_stripe", model="stripecharge")
    operations = []
    for charge in in_flight.select_related("customer"):
        # Enough to look the charge up (its uuid and attempt, and the customer when known); the full
        # request is rebuilt from the row before anything is sent again.
        params = {"amount": charge.amount, "currency": charge.currency, "metadata": _metadata(charge)}
        if charge.customer_id and charge.customer.stripe_customer_id:
            params["customer"] = charge.customer.stripe_customer_id
        operations.append(
            StripeOperation(
                uuid=uuid.uuid4(),
                key=f"charge:{charge.uuid}:{charge.attempt}",
                kind="charge",
                content_type=content_type,
                object_id=str(charge.pk),
                service="charges",
                method="create",
                params=params,
                state="unknown",
                attempts=1,
                needs_lookup=True,
                legacy=True,
                first_sent_at=charge.attempt_started_at,
                last_sent_at=charge.attempt_started_at,
            )
        )
    for charge in pending:
        amount = charge.pending_refund_amount
        operations.append(
            StripeOperation(
                uuid=uuid.uuid4(),
                key=f"refund:{charge.uuid}:{charge.amount_refunded}:{amount}",
                kind="refund",
                content_type=content_type,
                object_id=str(charge.pk),
                service="refunds",
                method="create",
                params={
                    "charge": charge.stripe_charge_id,
                    "amount": amount,
                    "metadata": {"charge_uuid": str(charge.uuid)},
                },
                state="unknown",
                attempts=1,
                needs_lookup=True,
                legacy=True,
                first_sent_at=charge.updated,
                last_sent_at=charge.updated,
            )
        )
    StripeOperation.objects.using(db).bulk_create(operations)


class Migration(migrations.Migration):
    dependencies = [
        ("aa_stripe", "0033_operations_journal"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(in_flight_to_operations, migrations.RunPython.noop, elidable=True),
    ]
