#!/usr/bin/env python3
"""Make the aa-stripe 0.13.0 database dumps that tests/test_upgrade_from_aa_stripe.py upgrades.

Re-runnable, standard library only (run it with any Python 3.10/3.11):

    python3 tests/upgrade/make_dumps.py                      # SQLite and PostgreSQL
    python3 tests/upgrade/make_dumps.py --skip-postgres      # SQLite only
    python3 tests/upgrade/make_dumps.py --venv /tmp/aa013    # reuse a venv

What it does:

1. makes (or reuses) a throwaway venv and installs aa-stripe 0.13.0 from PyPI with the pins it
   supports (Django 4.2, stripe < 3, djangorestframework, django-extensions, python-dateutil);
   no code of aa-stripe is copied here;
2. writes a tiny Django project into a temporary directory (auth.User, the default user model);
3. for SQLite and for PostgreSQL (a scratch database ``aa013_dump_<pid>``, dropped afterwards):
   runs aa-stripe's 22 migrations, inserts rows of every model through aa-stripe's own ORM
   without calling Stripe (see POPULATE), pins every timestamp so the dumps are reproducible,
   then writes ``aa_stripe_0_13_<db>_schema.sql`` (schema only) and ``aa_stripe_0_13_<db>.sql``
   (data only: INSERTs with column names, every table of the project);
4. writes the row count of every table to ``aa_stripe_0_13_row_counts.json``.

PostgreSQL: ``--pg-url postgres://postgres@127.0.0.1:5432`` (the default); needs psql and
pg_dump on PATH. The dumps are post-processed to drop psql meta-commands and session SETs that
newer pg_dump versions emit and older servers refuse.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
PINS = [
    "aa-stripe==0.13.0",
    "Django>=4.2,<5",
    "stripe<3",
    "djangorestframework",
    "django-extensions",
    "python-dateutil",
    "simplejson",
    "psycopg[binary]>=3.1",
]

SETTINGS = """
import os
SECRET_KEY = "aa-stripe-0.13-dump"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.sites",
    "rest_framework",
    "aa_stripe",
]
SITE_ID = 1
if os.environ["AA013_DB_ENGINE"] == "sqlite":
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["AA013_DB_NAME"]}}
else:
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["AA013_DB_NAME"],
        "HOST": os.environ["AA013_DB_HOST"],
        "PORT": os.environ["AA013_DB_PORT"],
        "USER": os.environ["AA013_DB_USER"],
        "PASSWORD": os.environ.get("AA013_DB_PASSWORD", ""),
    }}
STRIPE_API_KEY = "sk_test_not_used"  # nothing here calls Stripe
"""

# Runs inside the aa-stripe 0.13 venv. Rows go through aa-stripe's models (so JSON text is what
# django-extensions' JSONField writes); StripeCoupon.save() and StripeWebhook.save() would call
# Stripe / parse, so those rows use bulk_create and queryset.update instead.
POPULATE = r"""
import datetime as dt
import django
django.setup()

from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.contrib.sites.models import Site
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from aa_stripe.models import (StripeCharge, StripeCoupon, StripeCustomer, StripeSubscription,
                              StripeSubscriptionPlan, StripeWebhook)

UTC = dt.timezone.utc
T0 = dt.datetime(2023, 5, 4, 10, 0, 0, tzinfo=UTC)

def at(minutes):
    return T0 + dt.timedelta(minutes=minutes)

def card(card_id, brand, last4, customer):
    return {"id": card_id, "object": "card", "brand": brand, "last4": last4, "exp_month": 12,
            "exp_year": 2030, "customer": customer, "country": "US", "funding": "credit",
            "metadata": {}}

admin = User.objects.create(username="admin", email="admin@example.com", is_staff=True,
                            is_superuser=True, password="!unusable-admin", date_joined=at(0))
alice = User.objects.create(username="alice", email="alice@example.com", first_name="Alice",
                            password="!unusable-alice", date_joined=at(1))
bob = User.objects.create(username="bob", email="bob@example.com", password="!unusable-bob",
                          date_joined=at(2))

# --- customers -------------------------------------------------------------------------------
a_cards = [card("card_013AliceVisa", "Visa", "4242", "cus_013Alice"),
           card("card_013AliceMc", "MasterCard", "4444", "cus_013Alice")]
c_alice = StripeCustomer.objects.create(
    user=alice,
    stripe_js_response={"id": "tok_013Alice", "object": "token", "type": "card",
                        "card": {"id": "card_013AliceVisa", "brand": "Visa", "last4": "4242"}},
    stripe_customer_id="cus_013Alice",
    is_created_at_stripe=True,
    sources=a_cards,
    default_source="card_013AliceVisa",
    stripe_response={"id": "cus_013Alice", "object": "customer", "email": None,
                     "description": "alice id: 2", "default_source": "card_013AliceVisa",
                     "sources": {"object": "list", "data": a_cards, "has_more": False}},
)
c_bob_old = StripeCustomer.objects.create(  # replaced by a newer customer: inactive
    user=bob,
    stripe_js_response={"id": "tok_013BobOld", "object": "token"},
    stripe_customer_id="cus_013BobOld",
    is_active=False,
    is_created_at_stripe=True,
    stripe_response={"id": "cus_013BobOld", "object": "customer"},
)
c_bob = StripeCustomer.objects.create(  # stripe.js token stored, never created at Stripe
    user=bob,
    stripe_js_response={"id": "tok_013BobNew", "object": "token", "type": "card"},
)

# --- charges ---------------------------------------------------------------------------------
site_type = ContentType.objects.get_for_model(Site)
ch_partial = StripeCharge.objects.create(
    user=alice, customer=c_alice, amount=1000, amount_refunded=300, is_charged=True,
    stripe_charge_id="ch_013Partial", stripe_refund_id="re_013First",
    description="Order #1", comment="partly refunded by support", statement_descriptor="AA SHOP 1",
    content_type=site_type, object_id=1,
    stripe_response={"id": "ch_013Partial", "object": "charge", "amount": 1000, "amount_refunded": 300,
                     "currency": "usd", "paid": True, "refunded": False, "customer": "cus_013Alice",
                     "metadata": {"object_id": "1", "content_type_id": str(site_type.pk)}},
)
ch_declined = StripeCharge.objects.create(
    user=bob, customer=c_bob_old, amount=2500, is_charged=False, charge_attempt_failed=True,
    stripe_charge_id="ch_013Declined", description="Order #2", comment="",
    stripe_response={"error": {"type": "card_error", "code": "card_declined",
                               "decline_code": "insufficient_funds", "charge": "ch_013Declined",
                               "message": "Your card has insufficient funds.", "param": ""}},
)
ch_manual = StripeCharge.objects.create(  # amount_refunded NULL: the 0.13 column allows it
    user=alice, amount=499, amount_refunded=None, is_manual_charge=True,
    description="Manual invoice", comment="charge by hand",
)
ch_refunded = StripeCharge.objects.create(
    user=alice, customer=c_alice, amount=700, amount_refunded=700, is_charged=True, is_refunded=True,
    stripe_charge_id="ch_013Refunded", stripe_refund_id="re_013Full",
    description="Order #3", comment="",
    stripe_response={"id": "ch_013Refunded", "object": "charge", "amount": 700, "refunded": True},
)

# --- plans -----------------------------------------------------------------------------------
plan = StripeSubscriptionPlan.objects.create(  # aa-stripe created it at Stripe with id=str(pk)
    is_created_at_stripe=True, source={"prescription": 1}, amount=5000, name="gold-quarterly",
    interval="month", interval_count=3, metadata={"tier": "gold"}, statement_descriptor="GOLD PLAN",
    trial_period_days=7,
    stripe_response={"id": "1", "object": "plan", "amount": 5000, "currency": "usd",
                     "interval": "month", "interval_count": 3},
)
plan_draft = StripeSubscriptionPlan.objects.create(  # admin text that is not JSON
    source={}, amount=900, currency="eur", name="draft-weekly", interval="week",
    metadata="tier: draft (typed in the admin)",
)

# --- coupons (bulk_create: StripeCoupon.save() calls Stripe) ----------------------------------
StripeCoupon.objects.bulk_create([
    StripeCoupon(coupon_id="SPRING10", percent_off=10, duration="once", metadata={},
                 valid=False, created=dt.datetime(2019, 3, 1, tzinfo=UTC), is_deleted=True,
                 is_created_at_stripe=True, stripe_response={"id": "SPRING10", "object": "coupon"}),
    StripeCoupon(coupon_id="SPRING10", percent_off=15, duration="repeating", duration_in_months=3,
                 max_redemptions=100, times_redeemed=4, valid=True, metadata="",  # the admin wrote ''
                 redeem_by=dt.datetime(2030, 6, 1, tzinfo=UTC),
                 created=dt.datetime(2020, 3, 1, 12, 30, tzinfo=UTC), is_created_at_stripe=True,
                 stripe_response={"id": "SPRING10", "object": "coupon", "percent_off": 15}),
    StripeCoupon(coupon_id="FIVEOFF", amount_off="5.00", currency="usd", duration="forever",
                 metadata={"campaign": "launch"}, valid=False, is_deleted=True,
                 created=dt.datetime(2021, 1, 15, tzinfo=UTC), is_created_at_stripe=True,
                 stripe_response={"id": "FIVEOFF", "object": "coupon", "amount_off": 500}),
])
spring = StripeCoupon.objects.get(coupon_id="SPRING10")  # the live one

# --- subscriptions ---------------------------------------------------------------------------
sub_active = StripeSubscription.objects.create(
    stripe_subscription_id="sub_013Active", is_created_at_stripe=True, plan=plan, user=alice,
    customer=c_alice, status="active", metadata={"order": "A-1"}, tax_percent="8.25", coupon=spring,
    end_date=dt.date(2031, 1, 1),
    stripe_response={"id": "sub_013Active", "object": "subscription", "status": "active",
                     "discount": {"coupon": {"id": "SPRING10"}}},
)
sub_canceled = StripeSubscription.objects.create(
    stripe_subscription_id="sub_013Canceled", is_created_at_stripe=True, plan=plan, user=bob,
    customer=c_bob_old, status="canceled", metadata={}, canceled_at=at(50), at_period_end=True,
    stripe_response={"id": "sub_013Canceled", "object": "subscription", "status": "canceled"},
)

# --- webhooks (bulk_create: StripeWebhook.save() parses) ---------------------------------------
def event(evt_id, type_, obj, created):
    return {"id": evt_id, "object": "event", "type": type_, "created": created, "livemode": False,
            "api_version": "2017-06-05", "data": {"object": obj}}

StripeWebhook.objects.bulk_create([
    StripeWebhook(id="evt_013CouponCreated", is_parsed=True, raw_data=event(
        "evt_013CouponCreated", "coupon.created",
        {"id": "SPRING10", "object": "coupon", "created": 1583065800, "percent_off": 15}, 1583065801)),
    StripeWebhook(id="evt_013CouponFailed", is_parsed=False,
                  parse_error="Coupon with this coupon_id does not exists at Stripe API",
                  raw_data=event("evt_013CouponFailed", "coupon.created",
                                 {"id": "SUMMER20", "object": "coupon", "created": 1683194400,
                                  "percent_off": 20, "duration": "once", "valid": True,
                                  "times_redeemed": 0, "livemode": False,
                                  "metadata": {"season": "summer"}}, 1683194401)),
    StripeWebhook(id="evt_013CustomerUpdated", is_parsed=False, raw_data=event(
        "evt_013CustomerUpdated", "customer.updated",
        {"id": "cus_013Alice", "object": "customer", "default_source": "card_013AliceMc",
         "sources": {"object": "list", "data": a_cards, "has_more": False}}, 1683194500)),
    StripeWebhook(id="evt_013Dispute", is_parsed=False, raw_data=event(
        "evt_013Dispute", "charge.dispute.created",
        {"id": "dp_013", "object": "dispute", "charge": "ch_013Refunded", "amount": 700,
         "status": "needs_response", "reason": "fraudulent"}, 1683194600)),
])

# --- pin every timestamp, so that a second run writes the same dumps --------------------------
for i, model in enumerate([StripeCustomer, StripeCharge, StripeSubscriptionPlan, StripeCoupon,
                           StripeSubscription, StripeWebhook]):
    for j, pk in enumerate(model._base_manager.order_by("pk").values_list("pk", flat=True)):
        fields = {"updated": at(10 * i + j + 1)}
        if model is not StripeCoupon:  # StripeCoupon.created is Stripe's creation time
            fields["created"] = at(10 * i + j)
        model._base_manager.filter(pk=pk).update(**fields)
MigrationRecorder.Migration.objects.update(applied=T0 - dt.timedelta(days=1))
print("populated")
"""

COUNT_TABLES_SQL = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname='public' ORDER BY tablename",
}


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def make_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", str(venv)])
    run([str(python), "-m", "pip", "install", "--quiet", *PINS])
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('aa-stripe'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if version != "0.13.0":
        raise SystemExit(f"expected aa-stripe 0.13.0 in {venv}, found {version}")
    return python


def write_project(root: Path) -> None:
    (root / "aa013site").mkdir()
    (root / "aa013site" / "__init__.py").write_text("")
    (root / "aa013site" / "settings.py").write_text(SETTINGS)
    (root / "populate.py").write_text(POPULATE)


def build(python: Path, project: Path, env: dict[str, str]) -> None:
    env = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "aa013site.settings", "PYTHONPATH": str(project)}
    env.pop("DATABASE_URL", None)
    run([str(python), "-W", "ignore", "-m", "django", "migrate", "-v", "0"], cwd=project, env=env)
    run([str(python), "-W", "ignore", "populate.py"], cwd=project, env=env)


# --- SQLite --------------------------------------------------------------------------------------


def sqlite_dumps(db: Path) -> tuple[str, str, dict[str, int]]:
    con = sqlite3.connect(db)
    header = "-- aa-stripe 0.13.0 on SQLite, made by tests/upgrade/make_dumps.py; do not edit.\n"
    schema = [header, "-- schema only\n"]
    for (sql,) in con.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
        "ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END, rowid"
    ):
        schema.append(f"{sql};\n")
    data = [header, "-- data only (load the schema dump first)\n"]
    counts = {}
    tables = [name for (name,) in con.execute(COUNT_TABLES_SQL["sqlite"])]
    for table in tables:
        columns = [row[1] for row in con.execute(f'PRAGMA table_info("{table}")')]
        column_list = ", ".join(f'"{c}"' for c in columns)
        quoted = " || ', ' || ".join(f'quote("{c}")' for c in columns)
        rows = con.execute(f'SELECT {quoted} FROM "{table}" ORDER BY rowid').fetchall()
        counts[table] = len(rows)
        for (values,) in rows:
            data.append(f'INSERT INTO "{table}" ({column_list}) VALUES ({values});\n')
    con.close()
    return "".join(schema), "".join(data), counts


# --- PostgreSQL ----------------------------------------------------------------------------------

DROP_LINE = re.compile(r"^(\\|SET |SELECT pg_catalog\.set_config\('search_path')")


def clean_pg_dump(text: str, what: str) -> str:
    lines = [line for line in text.splitlines(keepends=True) if not DROP_LINE.match(line)]
    body = "".join(lines)
    body = re.sub(r"\n{3,}", "\n\n", body)
    header = (
        f"-- aa-stripe 0.13.0 on PostgreSQL, made by tests/upgrade/make_dumps.py; do not edit.\n-- {what}\n"
    )
    return header + body


def postgres_dumps(pg_url: str, python: Path, project: Path) -> tuple[str, str, dict[str, int]]:
    url = urllib.parse.urlsplit(pg_url)
    host, port = url.hostname or "127.0.0.1", str(url.port or 5432)
    user, password = url.username or "postgres", url.password or ""
    name = f"aa013_dump_{os.getpid()}"
    pg_env = {**os.environ, "PGHOST": host, "PGPORT": port, "PGUSER": user}
    if password:
        pg_env["PGPASSWORD"] = password
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"]
    run([*psql, "-c", f'CREATE DATABASE "{name}"'], env=pg_env)
    try:
        build(
            python,
            project,
            {
                "AA013_DB_ENGINE": "postgresql",
                "AA013_DB_NAME": name,
                "AA013_DB_HOST": host,
                "AA013_DB_PORT": port,
                "AA013_DB_USER": user,
                "AA013_DB_PASSWORD": password,
            },
        )
        common = ["pg_dump", "--no-owner", "--no-privileges", "--no-comments", "-d", name]
        schema = run([*common, "--schema-only"], env=pg_env, capture_output=True, text=True).stdout
        data = run(
            [*common, "--data-only", "--column-inserts", "--disable-triggers"],
            env=pg_env,
            capture_output=True,
            text=True,
        ).stdout
        tables = run(
            ["psql", "-X", "-At", "-d", name, "-c", COUNT_TABLES_SQL["postgresql"]],
            env=pg_env,
            capture_output=True,
            text=True,
        ).stdout.split()
        counts = {}
        for table in tables:
            out = run(
                ["psql", "-X", "-At", "-d", name, "-c", f'SELECT count(*) FROM "{table}"'],
                env=pg_env,
                capture_output=True,
                text=True,
            ).stdout
            counts[table] = int(out.strip())
    finally:
        run([*psql, "-c", f'DROP DATABASE IF EXISTS "{name}"'], env=pg_env)
    # --disable-triggers wraps each table in ALTER TABLE ... DISABLE TRIGGER ALL (superuser only);
    # the test loads the data in dependency order inside one transaction, so drop those lines.
    data = re.sub(r"^ALTER TABLE [^\n]* (DISABLE|ENABLE) TRIGGER ALL;\n", "", data, flags=re.M)
    return (
        clean_pg_dump(schema, "schema only"),
        clean_pg_dump(data, "data only (load the schema dump first)"),
        counts,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "aa-stripe-0.13-venv")
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()

    python = make_venv(args.venv)
    counts_path = args.out / "aa_stripe_0_13_row_counts.json"
    counts = json.loads(counts_path.read_text()) if counts_path.exists() else {}
    with tempfile.TemporaryDirectory(prefix="aa013-project-") as tmp:
        project = Path(tmp)
        write_project(project)

        db = project / "aa013.sqlite3"
        build(python, project, {"AA013_DB_ENGINE": "sqlite", "AA013_DB_NAME": str(db)})
        schema, data, counts["sqlite"] = sqlite_dumps(db)
        (args.out / "aa_stripe_0_13_sqlite_schema.sql").write_text(schema)
        (args.out / "aa_stripe_0_13_sqlite.sql").write_text(data)

        if not args.skip_postgres:
            schema, data, counts["postgresql"] = postgres_dumps(args.pg_url, python, project)
            (args.out / "aa_stripe_0_13_postgresql_schema.sql").write_text(schema)
            (args.out / "aa_stripe_0_13_postgresql.sql").write_text(data)

    counts_path.write_text(json.dumps(counts, indent=2, sort_keys=True) + "\n")
    print(
        textwrap.dedent(f"""
        wrote {args.out}/aa_stripe_0_13_*.sql and {counts_path.name}
    """).strip()
    )


if __name__ == "__main__":
    main()
