"""The webhook admin over HTTP: the "parse failed" filter and the "Re-parse selected webhooks" action."""

from __future__ import annotations

import threading
import time

import pytest
from django.contrib import messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection, connections, transaction
from django.urls import reverse

from aa_stripe.models import StripeWebhook
from aa_stripe.signals import webhook_pre_parse
from aa_stripe.testing import make_event

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:aa_stripe_stripewebhook_changelist"


@pytest.fixture
def failing_ids():
    """Ids whose parse raises (a webhook_pre_parse receiver) while in the set."""
    failing: set[str] = set()

    def receiver(sender, instance, **kwargs):
        if instance.id in failing:
            raise ValueError(f"no such order for {instance.id}")

    webhook_pre_parse.connect(receiver, sender=StripeWebhook, weak=False, dispatch_uid="test-admin-fail")
    yield failing
    webhook_pre_parse.disconnect(sender=StripeWebhook, dispatch_uid="test-admin-fail")


def store(event_id: str, created: int = 1_700_000_000) -> StripeWebhook:
    event = make_event("invoice.paid", {"id": f"in_{event_id}", "object": "invoice"}, id=event_id)
    event["created"] = created
    return StripeWebhook.store_event(event)[0]


@pytest.fixture
def rows(failing_ids):
    """evt_parsed (parsed), evt_failed (parse failed), evt_pending (never tried)."""
    parsed, failed, pending = store("evt_parsed"), store("evt_failed"), store("evt_pending")
    parsed.process()
    failing_ids.add(failed.id)
    failed.process()
    return parsed, failed, pending


def listed(client, **query) -> list[str]:
    response = client.get(reverse(CHANGELIST), query)
    assert response.status_code == 200
    return sorted(obj.pk for obj in response.context["cl"].result_list)


def reparse(client, ids: list[str]) -> list[tuple[int, str]]:
    response = client.post(reverse(CHANGELIST), {"action": "reparse", ACTION_CHECKBOX_NAME: ids}, follow=True)
    assert response.redirect_chain == [(reverse(CHANGELIST), 302)]
    return [(m.level, m.message) for m in response.context["messages"]]


def test_parse_failed_filter(staff_client, rows):
    assert listed(staff_client) == ["evt_failed", "evt_parsed", "evt_pending"]
    assert listed(staff_client, parse_failed="yes") == ["evt_failed"]
    assert listed(staff_client, parse_failed="no") == ["evt_parsed", "evt_pending"]
    assert listed(staff_client, is_parsed__exact="0") == ["evt_failed", "evt_pending"]
    assert listed(staff_client, is_parsed__exact="0", parse_failed="no") == ["evt_pending"]
    response = staff_client.get(reverse(CHANGELIST))
    assert "By parse failed" in response.content.decode()
    assert listed(staff_client, q="evt_failed") == ["evt_failed"]


def test_reparse_reports_failures_successes_and_skipped_rows(staff_client, rows, failing_ids):
    parsed, failed, pending = rows
    shown = reparse(staff_client, [parsed.pk, failed.pk, pending.pk])
    assert shown == [
        (
            messages.ERROR,
            "Could not parse webhook “evt_failed (invoice.paid)”: ValueError: no such order for evt_failed",
        ),
        (messages.SUCCESS, "Parsed 1 webhook."),
        (messages.INFO, "Skipped, already parsed: evt_parsed."),
    ]
    failed.refresh_from_db()
    assert (failed.is_parsed, failed.parse_attempts) == (False, 2)
    assert StripeWebhook.objects.get(pk=pending.pk).is_parsed

    failing_ids.clear()  # the cause is fixed
    assert reparse(staff_client, [failed.pk]) == [(messages.SUCCESS, "Parsed 1 webhook.")]
    failed.refresh_from_db()
    assert (failed.is_parsed, failed.parse_error, failed.parse_attempts) == (True, "", 3)
    assert StripeWebhook.objects.get(pk=parsed.pk).parse_attempts == 1  # never parsed twice


def test_reparse_parses_oldest_event_first(staff_client, failing_ids):
    order: list[str] = []
    failing_ids.add("evt_none")
    store("evt_b", created=1_700_000_200)
    store("evt_a", created=1_700_000_100)

    def record(sender, instance, **kwargs):
        order.append(instance.id)

    webhook_pre_parse.connect(record, sender=StripeWebhook, weak=False, dispatch_uid="test-admin-order")
    try:
        assert reparse(staff_client, ["evt_b", "evt_a"]) == [(messages.SUCCESS, "Parsed 2 webhooks.")]
    finally:
        webhook_pre_parse.disconnect(sender=StripeWebhook, dispatch_uid="test-admin-order")
    assert order == ["evt_a", "evt_b"]


def test_view_only_staff_cannot_reparse(client, rows):
    viewer = get_user_model().objects.create_user(username="viewer", password="pw", is_staff=True)
    # view and delete, not change: "Delete selected" is offered, re-parsing is not
    codenames = ["view_stripewebhook", "delete_stripewebhook"]
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(viewer)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert list(dict(response.context["action_form"].fields["action"].choices)) == ["", "delete_selected"]
    client.post(reverse(CHANGELIST), {"action": "reparse", ACTION_CHECKBOX_NAME: ["evt_pending"]})
    assert not StripeWebhook.objects.get(pk="evt_pending").is_parsed


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_a_row_a_worker_holds_is_left_to_it(staff_client):
    store("evt_held")
    store("evt_free")
    locked, release = threading.Event(), threading.Event()

    def worker() -> None:
        try:
            with transaction.atomic():
                StripeWebhook.objects.select_for_update().get(pk="evt_held")
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert locked.wait(30)
        started = time.monotonic()
        shown = reparse(staff_client, ["evt_held", "evt_free"])
        assert time.monotonic() - started < 10  # not blocked by the lock
    finally:
        release.set()
        thread.join(30)
    assert shown == [
        (messages.SUCCESS, "Parsed 1 webhook."),
        (messages.WARNING, "Skipped, parsed elsewhere right now: evt_held."),
    ]
    assert not StripeWebhook.objects.get(pk="evt_held").is_parsed


def test_tombstones_are_listed_read_only(staff_client):
    deletion = make_event("coupon.deleted", {"id": "GONE10", "object": "coupon", "created": 1_700_000_000})
    StripeWebhook.store_event(deletion)[0].process()

    page = staff_client.get(reverse("admin:aa_stripe_stripetombstone_changelist"), {"q": "GONE10"})

    assert page.status_code == 200 and b"GONE10" in page.content and deletion["id"].encode() in page.content
    assert staff_client.get(reverse("admin:aa_stripe_stripetombstone_add")).status_code == 403
