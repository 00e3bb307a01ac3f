"""Upgrading a real aa-stripe 0.13.0 database: dumps made by tests/upgrade/make_dumps.py.

For each database, a subprocess (tests/upgrade/run_upgrade.py, with the settings of a host that
used aa-stripe: auth.User) loads the committed schema and data dumps into an empty database,
runs our ``migrate``, reads every row again and uses the models on the upgraded rows against
the fake Stripe. It writes a JSON report; the tests below check it.

SQLite always runs. PostgreSQL runs when DATABASE_URL points at PostgreSQL (the CI's PostgreSQL
leg sets it): the test creates a scratch database ``upgrade_test_<random>`` on that server and
drops it afterwards. Not "whenever 127.0.0.1:5432 answers": the SQLite legs stay hermetic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aa_stripe.testing.fakestripe.plugin import FakeStripe
from tests.test_migrations import UPSTREAM  # aa-stripe 0.13's 22 migration names

ROOT = Path(__file__).resolve().parent.parent
UPGRADE = ROOT / "tests" / "upgrade"
RECORDED_COUNTS = json.loads((UPGRADE / "aa_stripe_0_13_row_counts.json").read_text())
# The tables our migrations add to aa-stripe 0.13's.
NEW_TABLES = {
    "aa_stripe_striperefund",
    "aa_stripe_stripetombstone",
    "aa_stripe_stripeoperation",
    "aa_stripe_striperequestkey",
    "aa_stripe_stripeproduct",
    "aa_stripe_stripeprice",
    "aa_stripe_stripepaymentmethod",
    "aa_stripe_stripesetupintent",
    "aa_stripe_stripeinvoice",
}
# Our migrations after aa-stripe 0.13's: the squash, then 0023 onwards (from the files).
NEW_MIGRATIONS = [
    "0001_squashed_0022_aa_stripe_0_13",
    *sorted(path.stem for path in (ROOT / "aa_stripe" / "migrations").glob("0*.py") if path.stem >= "0023"),
]
# Rows our migrate adds outside aa_stripe's own tables: the new migrations recorded, the
# content type and the four permissions of each new model.
ADDED_ROWS = {
    "django_migrations": len(NEW_MIGRATIONS),
    "django_content_type": len(NEW_TABLES),
    "auth_permission": 4 * len(NEW_TABLES),
}


def _postgres_url() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else None


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """A scratch database on DATABASE_URL's server, dropped afterwards."""
    url = _postgres_url()
    if url is None:
        pytest.skip("PostgreSQL: set DATABASE_URL=postgres://... (the CI's PostgreSQL leg does)")
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(url)
    name = f"upgrade_test_{uuid.uuid4().hex[:10]}"
    admin = {
        "host": config["HOST"] or "127.0.0.1",
        "port": config["PORT"] or 5432,
        "user": config["USER"],
        "password": config["PASSWORD"] or None,
        "dbname": "postgres",
        "autocommit": True,
    }
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        auth = config["USER"] + (f":{config['PASSWORD']}" if config["PASSWORD"] else "")
        yield f"postgres://{auth}@{admin['host']}:{admin['port']}/{name}"
    finally:
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def report(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    localstripe_server: str,
    fault_proxy: Any,
) -> dict[str, Any]:
    """Run the upgrade once per database; the fake is wiped first (what ``fake_stripe`` does)."""
    kind = request.param
    tmp = tmp_path_factory.mktemp(f"upgrade_{kind}")
    if kind == "sqlite":
        database_url = f"sqlite:///{tmp / 'upgraded.sqlite3'}"
    else:
        database_url = request.getfixturevalue("postgres_database")
    fake = FakeStripe(url=fault_proxy.url, direct_url=localstripe_server, proxy=fault_proxy)
    fake.wipe()
    fault_proxy.reset()
    report_path = tmp / "report.json"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.upgrade.settings",
        "UPGRADE_DATABASE_URL": database_url,
        "STRIPE_API_BASE": fake.url,
        "STRIPE_API_KEY": fake.api_key,
        "FAKE_STRIPE_DIRECT": fake.direct_url,
        "PYTHONWARNINGS": "ignore",
    }
    env.pop("DATABASE_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.upgrade.run_upgrade", kind, str(report_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    fault_proxy.reset()
    if proc.returncode != 0 or not report_path.exists():
        pytest.fail(f"run_upgrade exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(report_path.read_text())
    if "fatal" in result:
        pytest.fail(f"the upgrade failed on {kind}:\n{result['fatal']}")
    result["kind"] = kind
    return result


def _ok(report: dict[str, Any], step: str) -> Any:
    outcome = report["models"][step]
    assert outcome["ok"], f"{step}: {outcome['error']}\n{outcome['traceback']}"
    return outcome["value"]


# --- the schema ----------------------------------------------------------------------------------


def test_the_dump_loads_with_the_recorded_row_counts(report: dict[str, Any]) -> None:
    assert report["counts_before"] == RECORDED_COUNTS[report["kind"]]


def test_no_migration_of_ours_recreates_an_existing_table(report: dict[str, Any]) -> None:
    migrate = report["migrate"]
    assert "0001_squashed" not in migrate["plan"]
    assert "0001_squashed" not in migrate["output"]
    assert "Applying aa_stripe.0023_upgrade_checks_and_json_text... OK" in migrate["output"]
    # SQLite alters columns by rebuilding the table (CREATE TABLE "new__x", copy, rename);
    # apart from those, the only tables created are the new ones.
    created = {name for name in migrate["created_tables"] if not name.startswith("new__")}
    assert created == NEW_TABLES
    if report["kind"] == "postgresql":
        assert set(migrate["created_tables"]) == NEW_TABLES
    assert set(report["tables_after"]) == set(report["tables_before"]) | NEW_TABLES


def test_the_squash_is_recorded_beside_the_22_upstream_migrations(report: dict[str, Any]) -> None:
    applied = report["applied_aa_stripe_migrations"]
    assert applied[:22] == UPSTREAM
    assert "0001_squashed_0022_aa_stripe_0_13" in applied
    for name in ["0023_upgrade_checks_and_json_text", "0024_schema_for_1_0", "0029_customer_source_clocks"]:
        assert name in applied


def test_every_row_survives(report: dict[str, Any]) -> None:
    before, after = report["counts_before"], report["counts_after"]
    for table, count in before.items():
        assert after[table] == count + ADDED_ROWS.get(table, 0), table
    for table in NEW_TABLES:
        assert after[table] == 0, table


# --- the values ----------------------------------------------------------------------------------


def test_every_value_survives_except_the_text_that_was_not_json(report: dict[str, Any]) -> None:
    # Every column of every aa_stripe row (and of auth_user, django_content_type, django_site)
    # compared before and after, JSON text decoded; only these four values changed.
    assert sorted(report["value_changes"], key=lambda c: (c["table"], c["row"])) == [
        {"table": "aa_stripe_stripecharge", "row": "3", "column": "amount_refunded",
         "before": None, "after": 0},
        {"table": "aa_stripe_stripecoupon", "row": "2", "column": "metadata",
         "before": {"<not JSON text>": ""}, "after": {}},
        {"table": "aa_stripe_stripesubscriptionplan", "row": "1", "column": "currency",
         "before": "USD", "after": "usd"},  # aa-stripe's default; Stripe and our validator use lower case
        {"table": "aa_stripe_stripesubscriptionplan", "row": "2", "column": "metadata",
         "before": {"<not JSON text>": "tier: draft (typed in the admin)"}, "after": {}},
    ]  # fmt: skip


def test_json_text_columns_become_real_json_columns(report: dict[str, Any]) -> None:
    expected = "jsonb" if report["kind"] == "postgresql" else "text with JSON_VALID check"
    assert set(report["json_column_types"].values()) == {expected}
    orm = report["orm"]
    assert orm["json_lookup_campaign_launch"] == [3]
    assert orm["coupons"]["2"]["metadata"] == {}  # aa-stripe's admin wrote ''
    assert orm["plans"]["1"]["source"] == {"prescription": 1}
    assert [card["id"] for card in orm["customers"]["1"]["sources"]] == [
        "card_013AliceVisa",
        "card_013AliceMc",
    ]
    assert orm["customers"]["1"]["default_source_data"]["last4"] == "4242"
    assert orm["charges"]["2"]["stripe_response"]["error"]["decline_code"] == "insufficient_funds"


def test_amounts_flags_and_user_foreign_keys_survive(report: dict[str, Any]) -> None:
    orm = report["orm"]
    charges = orm["charges"]
    assert {
        pk: (c["user"], c["amount"], c["amount_refunded"], c["currency"]) for pk, c in charges.items()
    } == {
        "1": ("alice", 1000, 300, "usd"),
        "2": ("bob", 2500, 0, "usd"),
        "3": ("alice", 499, 0, "usd"),
        "4": ("alice", 700, 700, "usd"),
    }
    assert charges["1"]["source"] == "<Site: example.com>"  # the generic foreign key
    assert len({c["uuid"] for c in charges.values()}) == 4
    assert {pk: c["user"] for pk, c in orm["customers"].items()} == {"1": "alice", "2": "bob", "3": "bob"}
    subscriptions = orm["subscriptions"]
    assert subscriptions["1"] | {"uuid": None, "full_clean": None} == {
        "user": "alice", "plan": "gold-quarterly", "customer": 1, "coupon": "SPRING10",
        "metadata": {"order": "A-1"}, "tax_percent": "8.25", "uuid": None, "full_clean": None,
    }  # fmt: skip
    assert subscriptions["2"]["user"] == "bob"
    coupons = orm["coupons"]
    assert {pk: (c["coupon_id"], c["is_deleted"]) for pk, c in coupons.items()} == {
        "1": ("SPRING10", True),
        "2": ("SPRING10", False),
        "3": ("FIVEOFF", True),
    }
    assert (coupons["2"]["percent_off"], coupons["3"]["amount_off"]) == ("15", "5")
    assert orm["live_coupons"] == [2]


# --- the models on the upgraded rows, against the fake Stripe ------------------------------------


def test_refund_the_rest_of_the_partly_refunded_charge(report: dict[str, Any]) -> None:
    assert _ok(report, "refund_rest_of_charge") == {
        "refund_amount": 700,
        "amount_refunded": 1000,
        "is_refunded": True,
        "refund_rows": [[700, "usd"]],
        "fake_amount_refunded": 1000,
    }


def test_cancel_the_active_subscription(report: dict[str, Any]) -> None:
    assert _ok(report, "cancel_subscription") == {
        "status": "canceled",
        "canceled_at_set": True,
        "coupon": "SPRING10",
        "fake_status": "canceled",
    }


def test_reparse_the_unparsed_webhooks(report: dict[str, Any]) -> None:
    parsed = {"processed": True, "is_parsed": True, "parse_error": ""}
    assert _ok(report, "reparse_failed_coupon_webhook") == parsed
    assert report["models"]["summer_coupon"] == [
        {"coupon_id": "SUMMER20", "metadata": {"season": "summer"}, "percent_off": "20"}
    ]
    assert _ok(report, "reparse_customer_webhook") == parsed
    assert report["models"]["alice_default_source"] == "card_013AliceMc"


# --- gaps found by this upgrade, filled by migration 0030 --------------------------------------------


def test_upgraded_unparsed_dispute_webhook_reparses(report: dict[str, Any]) -> None:
    assert report["orm"]["webhooks"]["evt_013Dispute"]["event_type"] == "charge.dispute.created"
    assert _ok(report, "reparse_dispute_webhook")["is_parsed"] is True


def test_new_subscription_of_a_plan_aa_stripe_created(report: dict[str, Any]) -> None:
    assert report["orm"]["plans"]["1"]["stripe_plan_id"] == "1"
    assert _ok(report, "subscribe_to_upgraded_plan")["plan"] == "1"


def test_upgraded_rows_pass_full_clean(report: dict[str, Any]) -> None:
    orm = report["orm"]
    errors = {
        f"{kind}/{pk}": row["full_clean"]
        for kind in ("customers", "charges", "coupons", "plans", "subscriptions")
        for pk, row in orm[kind].items()
        if row["full_clean"]
    }
    assert errors == {}
