"""Client secrets stored before this version are redacted.

From 0037 on, client secrets (PaymentIntents, SetupIntents, invoices' confirmation secrets) are cut
out of everything stored; a webhook endpoint subscribed to every event type may have stored some
before (``payment_intent.*``, ``setup_intent.*``, ``invoice.*`` events). Those rows are rewritten
here, a batch at a time; rows without a secret are left untouched.
"""

from functools import reduce
from operator import or_

from django.db import migrations
from django.db.models import Q

BATCH = 500
EVENT_PREFIXES = ("payment_intent.", "setup_intent.", "invoice.", "charge.", "checkout.")


def redact_stored_secrets(apps, schema_editor):
    from aa_stripe.redaction import redact_secrets, redact_text

    db = schema_editor.connection.alias
    StripeWebhook = apps.get_model("aa_stripe", "StripeWebhook")
    types = reduce(or_, (Q(event_type__startswith=prefix) for prefix in EVENT_PREFIXES))
    rows = StripeWebhook.objects.using(db).filter(types).order_by("pk")
    last = None
    while True:
        page = rows.filter(pk__gt=last) if last is not None else rows
        page = list(page.only("pk", "event_type", "raw_data", "parse_error")[:BATCH])
        if not page:
            return
        last = page[-1].pk
        changed = []
        for row in page:
            raw_data, parse_error = redact_secrets(row.raw_data), redact_text(row.parse_error or "")
            if raw_data != row.raw_data or parse_error != (row.parse_error or ""):
                row.raw_data, row.parse_error = raw_data, parse_error
                changed.append(row)
        StripeWebhook.objects.using(db).bulk_update(changed, ["raw_data", "parse_error"])


class Migration(migrations.Migration):
    dependencies = [("aa_stripe", "0037_payment_methods_setup_intents")]

    operations = [migrations.RunPython(redact_stored_secrets, migrations.RunPython.noop, elidable=True)]
