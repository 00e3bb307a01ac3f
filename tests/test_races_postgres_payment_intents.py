"""Two ``charge_stripe`` processes on PaymentIntents (the default) race on the same rows
(PostgreSQL: real processes, real row locks): every row is paid by exactly one PaymentIntent."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from aa_stripe.models import StripeCharge
from tests.conftest import make_customer
from tests.test_races_postgres import (
    CHARGED_LINE,
    SUMMARY_LINE,
    fake_list,
    finish,
    processes_started_together,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="processes and row locks need PostgreSQL"),
]


def test_two_charge_stripe_processes_pay_each_of_40_rows_with_one_payment_intent(fake_stripe):
    users = [
        get_user_model().objects.create_user(username=f"payer{n}", email=f"payer{n}@example.com")
        for n in range(4)
    ]
    for someone in users:
        make_customer(fake_stripe, someone)  # a card source from a token, as aa-stripe saved them
    rows = [
        StripeCharge.objects.create(user=someone, amount=1000 + 10 * i + n, description=f"Order {i}-{n}")
        for i in range(10)
        for n, someone in enumerate(users)
    ]
    fake_stripe.proxy.reset()
    # Every payment takes 50 ms at "Stripe": the runs overlap while rows are being sent.
    fake_stripe.proxy.inject(
        "delay", method="POST", path_prefix="/v1/payment_intents", seconds=0.05, times=len(rows)
    )
    command = ["charge_stripe", "--verbosity", "2"]

    with processes_started_together(StripeCharge, command, command, api_base=fake_stripe.url) as procs:
        results = finish(procs)

    assert [code for code, _out, _err in results] == [0, 0], results
    by_process = [dict(CHARGED_LINE.findall(out)) for _code, out, _err in results]
    summaries = [[int(n) for n in SUMMARY_LINE.findall(out)] for _code, out, _err in results]
    assert summaries == [[len(found)] for found in by_process], results
    assert not by_process[0].keys() & by_process[1].keys()
    assert {int(pk) for found in by_process for pk in found} == {row.pk for row in rows}
    # (No "waits.hits == 0" here: that SKIP LOCKED property is the Charges-path test's; on a loaded
    # 2-core CI machine this one sampled a single wait once. What matters here is below.)

    posts = [
        p for p in fake_stripe.proxy.calls("POST", "/v1/payment_intents") if p.path == "/v1/payment_intents"
    ]
    assert sorted(p.idempotency_key for p in posts) == sorted(f"payment_intent:{row.uuid}:1" for row in rows)
    assert {(p.status, p.replayed) for p in posts} == {(200, False)}
    intents = {intent["id"]: intent for intent in fake_list(fake_stripe, "/v1/payment_intents")}
    assert len(intents) == len(rows)
    for row in StripeCharge.objects.all():
        assert (row.is_charged, row.status, row.attempt) == (True, "succeeded", 1)
        intent = intents[row.payment_intent_id]
        assert (intent["amount"], intent["metadata"]["charge_uuid"]) == (row.amount, str(row.uuid))
        assert intent["latest_charge"] == row.stripe_charge_id
    assert not fake_stripe.proxy.calls("POST", "/v1/charges")
