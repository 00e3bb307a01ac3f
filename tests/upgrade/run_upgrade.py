"""Upgrade an aa-stripe 0.13 dump with our migrations and report what happened, as JSON.

Run by tests/test_upgrade_from_aa_stripe.py in a subprocess (the suite's settings use a custom
user model; a host coming from aa-stripe has auth.User):

    python -m tests.upgrade.run_upgrade {sqlite|postgresql} REPORT.json

Environment: UPGRADE_DATABASE_URL (an empty database), STRIPE_API_BASE (the fake Stripe the code
under test talks to) and FAKE_STRIPE_DIRECT (the fake itself, to set up objects there).

Steps: load the schema dump, then the data dump; read every row with plain SQL; ``migrate``
(recording the SQL it runs); read every row again; use the models on the upgraded rows against
the fake Stripe. Every step records observations; the test asserts on them.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import sys
import traceback
from decimal import Decimal
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.upgrade.settings")
django.setup()

import requests  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

HERE = Path(__file__).resolve().parent
JSON_COLUMNS = {
    "aa_stripe_stripecustomer": ("stripe_response", "stripe_js_response", "sources"),
    "aa_stripe_stripecharge": ("stripe_response",),
    "aa_stripe_stripecoupon": ("stripe_response", "metadata"),
    "aa_stripe_stripesubscriptionplan": ("stripe_response", "source", "metadata"),
    "aa_stripe_stripesubscription": ("stripe_response", "metadata"),
    "aa_stripe_stripewebhook": ("raw_data",),
}


def load_dumps(kind: str) -> None:
    schema = (HERE / f"aa_stripe_0_13_{kind}_schema.sql").read_text()
    data = (HERE / f"aa_stripe_0_13_{kind}.sql").read_text()
    connection.ensure_connection()
    if connection.vendor == "sqlite":
        raw = connection.connection
        raw.executescript(f"BEGIN;\n{schema}\n{data}\nCOMMIT;")
    else:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(schema)
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            cursor.execute(data)


def tables() -> list[str]:
    return sorted(connection.introspection.table_names())


def counts() -> dict[str, int]:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        result = {}
        for table in tables():
            cursor.execute(f"SELECT COUNT(*) FROM {quote(table)}")
            result[table] = cursor.fetchone()[0]
    return result


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC).isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def normalize(table: str, column: str, value: Any) -> Any:
    """One comparable form for a value as 0.13 stored it and as our schema stores it."""
    if column in JSON_COLUMNS.get(table, ()):
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return {"<not JSON text>": value}
        return value
    if isinstance(value, str) and table in ("aa_stripe_stripecoupon",) and column == "amount_off":
        value = Decimal(value)
    if (
        connection.vendor == "sqlite"
        and isinstance(value, str)
        and column
        in ("created", "updated", "redeem_by", "canceled_at", "date_joined", "last_login", "applied")
    ):
        value = datetime.datetime.fromisoformat(value)
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and column in ("amount_off", "percent_off", "tax_percent")
    ):
        value = Decimal(str(value))
    if isinstance(value, Decimal):
        return plain(value)
    if column.startswith("is_") or column in ("livemode", "valid", "at_period_end", "charge_attempt_failed"):
        return bool(value) if value is not None else None
    if column == "object_id" and value is not None:
        return str(value)
    return plain(value)


def read_rows(table_names: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    quote = connection.ops.quote_name
    result: dict[str, dict[str, dict[str, Any]]] = {}
    with connection.cursor() as cursor:
        for table in table_names:
            cursor.execute(f"SELECT * FROM {quote(table)}")
            columns = [col[0] for col in cursor.description]
            rows = {}
            for row in cursor.fetchall():
                values = dict(zip(columns, row, strict=True))
                key = str(values.get("id", values.get("app")))
                rows[key if "id" in values else f"{values['app']}.{values['name']}"] = {
                    column: normalize(table, column, value) for column, value in values.items()
                }
            result[table] = rows
    return result


def diff_rows(before: dict, after: dict) -> list[dict[str, Any]]:
    """Changes of the values of columns that existed before (new columns are not compared)."""
    changes = []
    for table, rows in before.items():
        for key, old in rows.items():
            new = after.get(table, {}).get(key)
            if new is None:
                changes.append({"table": table, "row": key, "change": "missing"})
                continue
            for column, value in old.items():
                if column not in new:
                    changes.append({"table": table, "row": key, "column": column, "change": "dropped"})
                elif new[column] != value:
                    changes.append(
                        {"table": table, "row": key, "column": column, "before": value, "after": new[column]}
                    )
    return changes


def json_column_types() -> dict[str, str]:
    found = {}
    with connection.cursor() as cursor:
        for table, columns in JSON_COLUMNS.items():
            for column in columns:
                if connection.vendor == "postgresql":
                    cursor.execute(
                        "SELECT data_type FROM information_schema.columns"
                        " WHERE table_name=%s AND column_name=%s",
                        [table, column],
                    )
                    found[f"{table}.{column}"] = cursor.fetchone()[0]
                else:
                    cursor.execute("SELECT sql FROM sqlite_master WHERE name=%s", [table])
                    sql = cursor.fetchone()[0]
                    valid = f'JSON_VALID("{column}")' in sql
                    found[f"{table}.{column}"] = "text with JSON_VALID check" if valid else "text"
    return found


def migrate() -> dict[str, Any]:
    out = io.StringIO()
    call_command("migrate", plan=True, stdout=out, no_color=True)
    plan = out.getvalue()
    executed: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        executed.append(sql)
        return execute(sql, params, many, context)

    out = io.StringIO()
    with connection.execute_wrapper(record):
        call_command("migrate", verbosity=1, stdout=out, no_color=True)
    created = sorted(
        {sql.split('"')[1] for sql in executed if sql.lstrip().upper().startswith("CREATE TABLE")}
    )
    return {"plan": plan, "output": out.getvalue(), "created_tables": created}


def applied_migrations() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT app, name FROM django_migrations WHERE app='aa_stripe' ORDER BY id")
        return [name for _app, name in cursor.fetchall()]


def orm_view() -> dict[str, Any]:
    """The upgraded rows as the models read them (foreign keys followed)."""
    from aa_stripe.models import (
        StripeCharge,
        StripeCoupon,
        StripeCustomer,
        StripeSubscription,
        StripeSubscriptionPlan,
        StripeWebhook,
    )

    def clean_errors(obj: Any) -> Any:
        from django.core.exceptions import ValidationError

        try:
            obj.full_clean()
        except ValidationError as err:
            return {field: [str(m) for m in messages] for field, messages in err.message_dict.items()}
        return None

    view: dict[str, Any] = {}
    view["customers"] = {
        c.pk: {
            "user": c.user.username,
            "sources": c.sources,
            "default_source_data": c.default_source_data,
            "stripe_js_response": c.stripe_js_response,
            "full_clean": clean_errors(c),
        }
        for c in StripeCustomer.objects.select_related("user")
    }
    view["charges"] = {
        c.pk: {
            "user": c.user.username,
            "customer": c.customer_id,
            "amount": c.amount,
            "amount_refunded": c.amount_refunded,
            "currency": c.currency,
            "source": repr(c.source),
            "stripe_response": c.stripe_response,
            "uuid": str(c.uuid),
            "full_clean": clean_errors(c),
        }
        for c in StripeCharge.objects.select_related("user")
    }
    view["coupons"] = {
        c.pk: {
            "coupon_id": c.coupon_id,
            "metadata": c.metadata,
            "is_deleted": c.is_deleted,
            "percent_off": plain(c.percent_off),
            "amount_off": plain(c.amount_off),
            "full_clean": clean_errors(c),
        }
        for c in StripeCoupon.objects.all_with_deleted()
    }
    view["live_coupons"] = sorted(c.pk for c in StripeCoupon.objects.all())
    view["plans"] = {
        p.pk: {
            "source": p.source,
            "metadata": p.metadata,
            "currency": p.currency,
            "stripe_plan_id": p.stripe_plan_id,
            "full_clean": clean_errors(p),
        }
        for p in StripeSubscriptionPlan.objects.all()
    }
    view["subscriptions"] = {
        s.pk: {
            "user": s.user.username,
            "plan": s.plan.name,
            "customer": s.customer_id,
            "coupon": s.coupon.coupon_id if s.coupon else None,
            "metadata": s.metadata,
            "tax_percent": plain(s.tax_percent),
            "uuid": str(s.uuid),
            "full_clean": clean_errors(s),
        }
        for s in StripeSubscription.objects.select_related("user", "plan", "coupon")
    }
    view["webhooks"] = {
        w.pk: {
            "type": w.raw_data.get("type"),
            "event_type": w.event_type,
            "stripe_created_at": plain(w.stripe_created_at),
            "is_parsed": w.is_parsed,
            "parse_error": w.parse_error,
        }
        for w in StripeWebhook.objects.all()
    }
    view["json_lookup_campaign_launch"] = sorted(
        StripeCoupon.objects.all_with_deleted()
        .filter(metadata__campaign="launch")
        .values_list("pk", flat=True)
    )
    return view


class Fake:
    """Set-up calls straight to the fake Stripe (not through the code under test)."""

    def __init__(self, base: str, key: str) -> None:
        self.base, self.headers = base, {"Authorization": f"Bearer {key}"}

    def post(self, path: str, **data: Any) -> dict[str, Any]:
        response = requests.post(f"{self.base}{path}", data=data, headers=self.headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def get(self, path: str) -> dict[str, Any]:
        response = requests.get(f"{self.base}{path}", headers=self.headers, timeout=10)
        response.raise_for_status()
        return response.json()


def attempt(results: dict[str, Any], name: str, action: Any) -> Any:
    try:
        value = action()
    except Exception as err:
        results[name] = {
            "ok": False,
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(),
        }
        return None
    results[name] = {"ok": True, "value": value}
    return value


def use_models(fake: Fake) -> dict[str, Any]:
    from django.conf import settings

    from aa_stripe.models import (
        StripeCharge,
        StripeCoupon,
        StripeCustomer,
        StripeSubscription,
        StripeSubscriptionPlan,
        StripeWebhook,
    )

    results: dict[str, Any] = {}
    year = str(datetime.date.today().year + 1)
    token = fake.post(
        "/v1/tokens",
        **{
            "card[number]": "4242424242424242",
            "card[exp_month]": "12",
            "card[exp_year]": year,
            "card[cvc]": "123",
        },
    )
    customer = fake.post("/v1/customers", source=token["id"], description="alice (upgraded)")

    # The partly refunded charge: the same history at the fake (1000 charged, 300 refunded).
    stripe_charge = fake.post("/v1/charges", amount="1000", currency="usd", customer=customer["id"])
    fake.post("/v1/refunds", charge=stripe_charge["id"], amount="300")
    StripeCharge.objects.filter(pk=1).update(stripe_charge_id=stripe_charge["id"])

    def refund_rest() -> dict[str, Any]:
        charge = StripeCharge.objects.get(pk=1)
        refund = charge.refund()
        charge.refresh_from_db()
        at_fake = fake.get(f"/v1/charges/{stripe_charge['id']}")
        return {
            "refund_amount": refund["amount"],
            "amount_refunded": charge.amount_refunded,
            "is_refunded": charge.is_refunded,
            "refund_rows": [(r.amount, r.currency) for r in charge.refunds.all()],
            "fake_amount_refunded": at_fake["amount_refunded"],
        }

    attempt(results, "refund_rest_of_charge", refund_rest)

    # The active subscription: aa-stripe created plan 1 at Stripe under the id "1".
    fake.post(
        "/v1/plans",
        id="1",
        amount="5000",
        currency="usd",
        interval="month",
        interval_count="3",
        **{"product[name]": "gold-quarterly"},
    )
    stripe_sub = fake.post("/v1/subscriptions", customer=customer["id"], **{"items[0][plan]": "1"})
    StripeSubscription.objects.filter(pk=1).update(stripe_subscription_id=stripe_sub["id"])

    def cancel() -> dict[str, Any]:
        subscription = StripeSubscription.objects.get(pk=1)
        subscription.cancel()
        subscription.refresh_from_db()
        return {
            "status": subscription.status,
            "canceled_at_set": subscription.canceled_at is not None,
            "coupon": subscription.coupon.coupon_id if subscription.coupon else None,
            "fake_status": fake.get(f"/v1/subscriptions/{stripe_sub['id']}")["status"],
        }

    attempt(results, "cancel_subscription", cancel)

    def reparse(event_id: str) -> Any:
        def run() -> dict[str, Any]:
            webhook = StripeWebhook.objects.get(pk=event_id)
            ok = webhook.process()
            webhook.refresh_from_db()
            return {"processed": ok, "is_parsed": webhook.is_parsed, "parse_error": webhook.parse_error}

        return run

    attempt(results, "reparse_failed_coupon_webhook", reparse("evt_013CouponFailed"))
    results["summer_coupon"] = [
        {"coupon_id": c.coupon_id, "metadata": c.metadata, "percent_off": plain(c.percent_off)}
        for c in StripeCoupon.objects.filter(coupon_id="SUMMER20")
    ]
    attempt(results, "reparse_customer_webhook", reparse("evt_013CustomerUpdated"))
    results["alice_default_source"] = StripeCustomer.objects.get(pk=1).default_source
    attempt(results, "reparse_dispute_webhook", reparse("evt_013Dispute"))

    # A new subscription of the plan aa-stripe created at Stripe (as plan id "1").
    def subscribe_to_upgraded_plan() -> dict[str, Any]:
        StripeCustomer.objects.filter(pk=1).update(stripe_customer_id=customer["id"])
        subscription = StripeSubscription.objects.create(
            plan=StripeSubscriptionPlan.objects.get(pk=1),
            user=StripeCustomer.objects.get(pk=1).user,
        )
        stripe_subscription = subscription.create_at_stripe()
        return {"status": stripe_subscription["status"], "plan": stripe_subscription["plan"]["id"]}

    attempt(results, "subscribe_to_upgraded_plan", subscribe_to_upgraded_plan)
    results["api_base"] = settings.STRIPE_API_BASE
    return results


def main() -> None:
    kind, report_path = sys.argv[1], Path(sys.argv[2])
    report: dict[str, Any] = {"vendor": connection.vendor}
    try:
        load_dumps(kind)
        report["tables_before"] = tables()
        report["counts_before"] = counts()
        aa_tables = [t for t in report["tables_before"] if t.startswith("aa_stripe_")]
        before = read_rows([*aa_tables, "auth_user", "django_content_type", "django_site"])
        report["migrate"] = migrate()
        report["applied_aa_stripe_migrations"] = applied_migrations()
        report["tables_after"] = tables()
        report["counts_after"] = counts()
        after = read_rows(list(before))
        report["value_changes"] = diff_rows(before, after)
        report["json_column_types"] = json_column_types()
        report["orm"] = orm_view()
        fake = Fake(
            os.environ["FAKE_STRIPE_DIRECT"], os.environ.get("STRIPE_API_KEY", "sk_test_aa_stripe_tests")
        )
        report["models"] = use_models(fake)
        report["counts_end"] = counts()
    except Exception:
        report["fatal"] = traceback.format_exc()
    report_path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))


if __name__ == "__main__":
    main()
