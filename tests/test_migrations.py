"""Migrations continue aa-stripe 0.13's history and follow STRIPE_USER_MODEL."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from aa_stripe.models import StripeCharge, StripeCustomer, StripeSubscription

UPSTREAM = [
    "0001_initial", "0002_auto_20170607_0714", "0003_auto_20170608_1103", "0004_auto_20170613_0419",
    "0005_auto_20170613_0614", "0006_subscription_end_cancel", "0007_auto_20170630_0557",
    "0008_auto_20170630_0734", "0009_auto_20170725_1205", "0010_auto_20170822_1004",
    "0011_auto_20170907_1201", "0012_auto_20170908_1150", "0013_stripesubscription_at_period_end",
    "0014_stripecharge_charge_attempt_failed", "0015_auto_20170925_0838", "0016_stripecharge_is_refunded",
    "0017_stripecharge_manual_charge", "0018_stripecustomer_sources", "0019_stripecustomer_default_source",
    "0020_stripecharge_statement_descriptor", "0021_auto_20190906_1623", "0022_stripecharge_amount_refunded",
]  # fmt: skip

upgrade_checks = importlib.import_module("aa_stripe.migrations.0023_upgrade_checks_and_json_text")


def test_first_migration_replaces_aa_stripes_22_migrations():
    loader = MigrationLoader(None, ignore_no_migrations=True)
    squash = loader.disk_migrations[("aa_stripe", "0001_squashed_0022_aa_stripe_0_13")]
    assert squash.replaces == [("aa_stripe", name) for name in UPSTREAM]


@pytest.mark.parametrize("model", [StripeCustomer, StripeCharge, StripeSubscription])
def test_user_foreign_keys_follow_the_custom_user_model(model):
    assert model._meta.get_field("user").related_model is get_user_model()
    loader = MigrationLoader(None, ignore_no_migrations=True)
    state = loader.project_state(("aa_stripe", loader.graph.leaf_nodes("aa_stripe")[0][1]))
    field = state.models["aa_stripe", model._meta.model_name].fields["user"]
    assert field.remote_field.model.lower() == "testapp.user"
    squash = loader.disk_migrations[("aa_stripe", "0001_squashed_0022_aa_stripe_0_13")]
    assert ("testapp", "__first__") in squash.dependencies


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ('{"a": 1}', '{"a": 1}'),
        ("[]", "[]"),
        ("", "{}"),
        ("   ", "{}"),
        (None, "{}"),
        ("not json", "{}"),
        ('{"name": "a\\u0000b"}', '{"name": "ab"}'),
        ("null", "null"),
    ],
)
def test_json_text_is_cleaned_before_becoming_a_json_column(stored, expected):
    assert upgrade_checks.clean_json_text(stored, "{}") == expected


@pytest.mark.django_db
def test_half_migrated_aa_stripe_history_is_refused_with_instructions():
    recorder = MigrationRecorder(connection)
    recorder.migration_qs.filter(app="aa_stripe").delete()  # as if only aa-stripe had run, partly
    for name in UPSTREAM[:15]:
        recorder.record_applied("aa_stripe", name)

    editor = SimpleNamespace(connection=connection)  # all the check reads of a schema editor
    with pytest.raises(RuntimeError, match="15 of aa-stripe's 22"):
        upgrade_checks.refuse_partial_upstream_history(None, editor)

    for name in UPSTREAM[15:]:
        recorder.record_applied("aa_stripe", name)
    upgrade_checks.refuse_partial_upstream_history(None, editor)  # a complete history is fine
