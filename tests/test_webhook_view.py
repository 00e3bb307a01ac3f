"""The webhook endpoint: what it refuses (400/405 in JSON, nothing stored, a warning), stores and parses."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import event as hypothesis_event
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from aa_stripe.models import StripeCoupon, StripeWebhook
from aa_stripe.signals import stripe_webhook_stored, webhook_pre_parse
from aa_stripe.testing import make_event, sign_payload
from tests.stripe_fixtures import stripe_object

URL = "/aa-stripe/webhooks"
SECRET = "whsec_aa_stripe_tests"  # tests/settings.py
MAX = 1024 * 1024


def coupon_event(**overrides: Any) -> dict[str, Any]:
    return make_event("coupon.created", stripe_object("coupon", id=f"WEBHOOK{time.time_ns()}"), **overrides)


def encode(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def signed(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    return {"Stripe-Signature": sign_payload(body, secret, timestamp)}


def post(client: Client, body: bytes, headers: dict[str, str] | None = None, url: str = URL, **extra: Any):
    return client.post(url, data=body, content_type="application/json", headers=headers or {}, **extra)


def answer(response: Any) -> dict[str, Any]:
    """The JSON body: every outcome, refusals included, is JSON (never Django's HTML pages)."""
    assert response["Content-Type"] == "application/json", response.content[:200]
    return response.json()


def numbers_as_decimals(value: Any) -> Any:
    """JSON with every number a Decimal: PostgreSQL's jsonb gives 1.5e+18 back as 1500000000000000000."""
    return json.loads(json.dumps(value), parse_float=Decimal, parse_int=Decimal)


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="aa_stripe")
    return caplog


def warned(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aa_stripe" and r.levelno == level]


@contextlib.contextmanager
def receiving(signal: Any, receiver: Any):
    signal.connect(receiver, weak=False, dispatch_uid=f"test_webhook_view.{id(receiver)}")
    try:
        yield
    finally:
        signal.disconnect(dispatch_uid=f"test_webhook_view.{id(receiver)}")


@pytest.fixture
def pre_parse_calls():
    calls: list[str] = []
    with receiving(webhook_pre_parse, lambda sender, instance, **kwargs: calls.append(instance.id)):
        yield calls


# --- refusals -------------------------------------------------------------------------------------

BIG = b'{"id": "evt_big", "type": "coupon.created", "pad": "' + b"x" * (2 * MAX) + b'"}'


def _case(body: Any, header: str = "signed", method: str = "post", **extra: Any):
    return (body, header, method, extra)


# case -> (body, how to sign, method, extra WSGI environ), status, reason (a substring)
REFUSALS = {
    "no header": (_case(coupon_event(), header="none"), 400, "missing Stripe-Signature header"),
    "garbage header": (_case(coupon_event(), header="garbage"), 400, "malformed Stripe-Signature header"),
    "no v1 entry": (_case(coupon_event(), header="t=1,v0=abc"), 400, "malformed Stripe-Signature header"),
    "non-ASCII header": (_case(coupon_event(), header="t=1,v1=é"), 400, "malformed Stripe-Signature header"),
    "wrong secret": (_case(coupon_event(), header="wrong secret"), 400, "no signature matches the payload"),
    "stale timestamp": (_case(coupon_event(), header="stale"), 400, "timestamp outside the tolerance zone"),
    "empty body": (_case(b""), 400, "empty body"),
    "not JSON": (_case(b"not json"), 400, "body is not JSON"),
    "not UTF-8": (_case(b'{"id": "\xff"}'), 400, "body is not UTF-8"),
    "JSON array": (_case([coupon_event()]), 400, "body is not a JSON object"),
    "not an event": (_case(coupon_event(object="coupon")), 400, "body is not a Stripe event object"),
    "event without id": (_case({"object": "event", "type": "coupon.created"}), 400, "event has no valid id"),
    "event without type": (_case({"object": "event", "id": "evt_1"}), 400, "event has no valid type"),
    "id not a string": (_case(coupon_event(id=12)), 400, "event has no valid id"),
    "created not a number": (_case(coupon_event(created="now")), 400, "event has no valid created time"),
    "created out of range": (_case(coupon_event(created=10**20)), 400, "event has no valid created time"),
    "NaN": (_case(b'{"id": "evt_1", "type": "a.b", "n": NaN}'), 400, "body is not JSON"),
    "1e999": (_case(b'{"id": "evt_1", "type": "a.b", "n": 1e999}'), 400, "body is not JSON"),
    "NUL in a string": (_case(coupon_event(note="a\x00b")), 400, "NUL or unpaired surrogate"),
    "lone surrogate": (_case(coupon_event(note="\ud800")), 400, "NUL or unpaired surrogate"),
    "nested 200 deep": (_case(coupon_event(deep=json.loads("[" * 200 + "]" * 200))), 400, "nested deeper"),
    "2 MB body": (_case(BIG), 413, f"body larger than {MAX} bytes"),
    "2 MB, lying Content-Length": (_case(BIG, CONTENT_LENGTH="100"), 400, "no signature matches"),
    "2 MB, chunked": (_case(BIG, CONTENT_LENGTH="", HTTP_TRANSFER_ENCODING="chunked"), 400, "empty body"),
    "bad Content-Length": (_case(coupon_event(), CONTENT_LENGTH="ten"), 400, "invalid Content-Length"),
    "GET": (_case(coupon_event(), method="get"), 405, "method not allowed"),
    "PUT": (_case(coupon_event(), method="put"), 405, "method not allowed"),
    "DELETE": (_case(b"", header="none", method="delete"), 405, "method not allowed"),
}


def _headers(how: str, body: bytes) -> dict[str, str]:
    if how == "signed":
        return signed(body)
    if how == "none":
        return {}
    if how == "wrong secret":
        return signed(body, secret="whsec_not_ours")
    if how == "stale":
        return signed(body, timestamp=int(time.time()) - 301)
    return {"Stripe-Signature": "garbage" if how == "garbage" else how}


@pytest.mark.django_db
@pytest.mark.parametrize(("case", "status", "reason"), REFUSALS.values(), ids=list(REFUSALS))
def test_refusals_are_json_store_nothing_and_warn(client, warnings, case, status, reason):
    body, how, method, extra = case
    body = encode(body)
    response = client.generic(
        method.upper(), URL, data=body, content_type="application/json", headers=_headers(how, body), **extra
    )

    assert response.status_code == status
    assert reason in answer(response)["error"]
    assert StripeWebhook.objects.count() == 0
    assert any("Stripe webhook refused" in message for message in warned(warnings))
    if status == 405:
        assert response["Allow"] == "POST"


# --- signatures and secrets -----------------------------------------------------------------------


@pytest.mark.django_db
def test_one_valid_v1_among_several_is_accepted_once(client, pre_parse_calls):
    event = coupon_event()
    body, timestamp = encode(event), int(time.time())
    good = sign_payload(body, SECRET, timestamp).split(",")[1]
    header = f"t={timestamp},v1={'0' * 64},{good},v0=old"

    assert answer(post(client, body, {"Stripe-Signature": header}))["status"] == "parsed"
    assert answer(post(client, body, {"Stripe-Signature": header}))["status"] == "duplicate"
    assert list(StripeWebhook.objects.values_list("id", flat=True)) == [event["id"]]
    assert pre_parse_calls == [event["id"]]


@pytest.mark.django_db
@pytest.mark.parametrize("secret", ["whsec_old", "whsec_new"])
def test_rotated_secrets_each_verify(client, settings, secret):
    settings.STRIPE_WEBHOOK_ENDPOINT_SECRET = ["whsec_old", "whsec_new"]
    event = coupon_event()
    body = encode(event)

    response = post(client, body, signed(body, secret=secret))

    assert (response.status_code, answer(response)["status"]) == (200, "parsed")
    assert StripeWebhook.objects.get().id == event["id"]


@pytest.mark.django_db
@pytest.mark.parametrize(("debug", "allow"), [(False, False), (True, False), (False, True)])
def test_no_secret_configured_refuses_every_event(client, settings, warnings, debug, allow):
    settings.STRIPE_WEBHOOK_ENDPOINT_SECRET = ["", "  "]
    settings.DEBUG, settings.STRIPE_WEBHOOK_ALLOW_UNSIGNED_IN_DEBUG = debug, allow
    body = encode(coupon_event())

    for headers in ({}, signed(body)):
        response = post(client, body, headers)
        assert response.status_code == 400
        assert answer(response)["error"] == "no webhook secret is configured: events are refused"
    assert StripeWebhook.objects.count() == 0
    assert len(warned(warnings)) == 2


@pytest.mark.django_db
def test_debug_with_allow_unsigned_accepts_unsigned_events(client, settings):
    settings.STRIPE_WEBHOOK_ENDPOINT_SECRET = ""
    settings.DEBUG, settings.STRIPE_WEBHOOK_ALLOW_UNSIGNED_IN_DEBUG = True, True
    event = coupon_event()

    response = post(client, encode(event))

    assert (response.status_code, answer(response)["status"]) == (200, "parsed")
    assert StripeWebhook.objects.get().is_parsed
    assert answer(post(client, b"[]"))["error"] == "body is not a JSON object"  # still an event or nothing


# --- storing and parsing --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("url", [URL, URL + "/"])
def test_happy_path_stores_exactly_what_was_sent_and_parses_it(client, pre_parse_calls, url):
    event = coupon_event(created=1_700_000_000)
    body = json.dumps(event, indent=2, sort_keys=True).encode()  # Stripe's own formatting

    response = post(client, body, signed(body), url=url)

    assert response.status_code == 200
    assert answer(response) == {"id": event["id"], "status": "parsed"}
    webhook = StripeWebhook.objects.get()
    assert (webhook.id, webhook.event_type) == (event["id"], "coupon.created")
    assert webhook.stripe_created_at.timestamp() == 1_700_000_000
    assert webhook.raw_data == event
    assert (webhook.is_parsed, webhook.parse_error, webhook.parse_attempts) == (True, "", 1)
    assert pre_parse_calls == [event["id"]]
    assert StripeCoupon.objects.get().coupon_id == event["data"]["object"]["id"]  # the handler ran


@pytest.mark.django_db
def test_csrf_enforcement_does_not_block_it_and_no_login_is_needed():
    event = coupon_event()
    body = encode(event)

    response = post(Client(enforce_csrf_checks=True), body, signed(body))

    assert (response.status_code, answer(response)["status"]) == (200, "parsed")


@pytest.mark.django_db
def test_duplicate_delivery_answers_200_keeps_one_row_and_parses_once(client, pre_parse_calls):
    event = coupon_event()
    body = encode(event)

    first = post(client, body, signed(body))
    again = post(client, body, signed(body, timestamp=int(time.time()) - 60))  # Stripe's retry, re-signed

    assert (first.status_code, answer(first)["status"]) == (200, "parsed")
    assert (again.status_code, answer(again)) == (200, {"id": event["id"], "status": "duplicate"})
    assert StripeWebhook.objects.count() == 1
    assert pre_parse_calls == [event["id"]]


@pytest.mark.django_db
def test_parse_failure_is_recorded_on_the_row_logged_and_still_answered_200(client, caplog):
    def explode(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver exploded")

    event = coupon_event()
    body = encode(event)
    with receiving(webhook_pre_parse, explode):
        response = post(client, body, signed(body))

    assert (response.status_code, answer(response)["status"]) == (200, "stored, parse failed")
    webhook = StripeWebhook.objects.get()
    assert (webhook.is_parsed, webhook.parse_error) == (False, "RuntimeError: receiver exploded")
    assert webhook.raw_data == event
    assert StripeCoupon.objects.count() == 0  # the handlers' work rolled back with the failure
    assert any("could not be parsed" in message for message in warned(caplog, logging.ERROR))


@pytest.mark.django_db
def test_deferred_parsing_stores_sends_stored_and_does_not_parse(
    client, settings, pre_parse_calls, django_capture_on_commit_callbacks
):
    settings.STRIPE_WEBHOOK_DEFERRED_PARSING = True
    stored: list[StripeWebhook] = []
    event = coupon_event()
    body = encode(event)
    on_stored = lambda sender, instance, **kwargs: stored.append(instance)  # noqa: E731
    with receiving(stripe_webhook_stored, on_stored), django_capture_on_commit_callbacks(execute=True):
        response = post(client, body, signed(body))
        duplicate = post(client, body, signed(body))

    assert answer(response) == {"id": event["id"], "status": "stored"}
    assert answer(duplicate)["status"] == "duplicate"
    assert [w.id for w in stored] == [event["id"]]  # once: a duplicate is not "stored"
    assert StripeWebhook.objects.get().is_parsed is False
    assert pre_parse_calls == []


@pytest.mark.django_db(transaction=True)
def test_store_commits_on_its_own_even_with_atomic_requests(client, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    seen: list[tuple[bool, int]] = []

    def during_parse(sender: Any, instance: StripeWebhook, **kwargs: Any) -> None:
        # Parsing runs in the claim's transaction, the outermost, with no savepoint: under a
        # request-wide transaction there would be one.
        seen.append((connection.in_atomic_block, len(connection.savepoint_ids)))

    body = encode(coupon_event())
    with receiving(webhook_pre_parse, during_parse):
        assert answer(post(client, body, signed(body)))["status"] == "parsed"
    assert seen == [(True, 0)]


# --- property: whatever arrives, never a 5xx, and stored only when it was a valid event -------------

storable_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**18, max_value=10**4000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | storable_text
)
storable_json = st.recursive(
    json_leaves, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(storable_text, kids, max_size=4)
)
any_json = st.recursive(
    json_leaves | st.floats() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
)
valid_events = st.builds(
    lambda suffix, type_, created, data, extra: {
        **extra,
        "id": f"evt_{suffix}",
        "object": "event",
        "type": type_,
        "created": created,
        "data": {"object": data},
    },
    storable_text.filter(str.strip),
    st.sampled_from(["coupon.created", "customer.updated", "charge.succeeded", "charge.dispute.closed"])
    | storable_text.filter(str.strip),
    st.integers(min_value=0, max_value=2**33),
    storable_json,
    st.dictionaries(storable_text, storable_json, max_size=3),
)
event_like = st.fixed_dictionaries(
    {}, optional={"id": any_json, "type": any_json, "object": any_json, "created": any_json, "data": any_json}
)
poisons = st.sampled_from(
    [float("nan"), float("inf"), "\x00", "a\ud800", 10**4000, json.loads("[" * 150 + "]" * 150)]
)
poisoned_events = st.builds(
    lambda event, key, poison: {**event, key: poison}, valid_events, storable_text, poisons
)
# (body, whether it is a valid event that must be stored once it is correctly signed)
bodies = st.one_of(
    st.binary(max_size=300).map(lambda body: (body, False)),
    st.text(max_size=300).map(lambda text: (text.encode("utf-8", "surrogatepass"), False)),
    st.one_of(any_json, event_like, poisoned_events).map(lambda value: (json.dumps(value).encode(), False)),
    valid_events.map(lambda value: (json.dumps(value).encode(), True)),
)
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
random_signatures = st.text(max_size=120) | st.builds(
    lambda t, sigs: ",".join([f"t={t}", *(f"v1={sig}" for sig in sigs)]),
    st.integers() | st.text(max_size=12),
    st.lists(hex64 | st.text(max_size=70), max_size=3),
)

# What a WSGI server can hand over in a header: latin-1 text without control characters.
header_text = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40
)
content_types = (
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "",
        ]
    )
    | header_text
)
header_names = st.sampled_from(
    ["Accept", "Content-Encoding", "Transfer-Encoding", "X-Forwarded-For", "User-Agent", "Expect", "Cookie"]
) | st.from_regex(r"X-[A-Za-z-]{1,12}", fullmatch=True)
extra_headers = st.dictionaries(header_names, header_text, max_size=3)


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body_valid=bodies,
    sign=st.sampled_from(["correctly", "randomly", "not at all"]),
    age=st.integers(min_value=-1000, max_value=1000),
    signature=random_signatures,
    method=st.sampled_from(["post"] * 8 + ["get", "put", "patch"]),
    content_type=content_types,
    extra=extra_headers,
)
def test_the_view_never_fails_on_whatever_arrives(
    client, body_valid, sign, age, signature, method, content_type, extra
):
    StripeWebhook.objects.all().delete()
    body, valid = body_valid
    headers = {
        "correctly": signed(body, timestamp=int(time.time()) - age),
        "randomly": {"Stripe-Signature": signature},
        "not at all": {},
    }[sign]

    response = client.generic(
        method.upper(), URL, data=body, content_type=content_type, headers={**extra, **headers}
    )

    assert response.status_code in (200, 400, 405)
    reply = answer(response)
    hypothesis_event(f"{response.status_code} {reply.get('error', reply.get('status'))}")
    # At the tolerance's edge (300 s) the second that passes between signing and verifying decides:
    # either answer is right there.
    at_the_edge = sign == "correctly" and 298 <= age <= 302
    if valid and not at_the_edge:  # a storable event: stored exactly when correctly signed, recently, POSTed
        assert (response.status_code == 200) == ((method, sign, age <= 300) == ("post", "correctly", True))
    if response.status_code != 200:
        assert StripeWebhook.objects.count() == 0, reply
        return
    sent = json.loads(body)
    assert (method, sign, age <= 300) == ("post", "correctly", True)
    assert isinstance(sent, dict) and sent.get("object", "event") == "event"
    webhook = StripeWebhook.objects.get()
    assert (webhook.id, webhook.event_type) == (sent["id"], sent["type"])
    assert numbers_as_decimals(webhook.raw_data) == numbers_as_decimals(sent)
    assert reply["status"] in ("parsed", "stored, parse failed")
