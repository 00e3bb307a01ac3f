"""The stand-in stripe.js the fake serves at ``/js.stripe.com/v3/``: localstripe's, with
``confirmCardPayment`` answering as Stripe's does.

localstripe's stand-in (read from its installed package at runtime, never copied here) always opens its
pass/fail dialog and calls ``/v1/payment_intents/{id}/_authenticate``, ignoring the ``payment_method`` a
page passes, and reports a failed authentication as a success (``{paymentIntent}`` without ``error``).
Stripe's stripe.js confirms the intent with the given payment method first (a retry after a failed
attempt: the intent is back in ``requires_payment_method``), opens the bank's dialog only when the intent
then ``requires_action``, and answers a failed authentication or a decline with ``{error}`` (the
intent's ``last_payment_error``, with ``payment_intent``). The override (``stripe_js_confirm.js``, our own
code) does that against the fake's endpoints, so a page written for Stripe's stripe.js works offline
unchanged. ``confirmCardSetup`` and the card Element stay localstripe's.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from localstripe import server as ls_server

_LOCALSTRIPE_JS = Path(ls_server.__file__).resolve().parent / "localstripe-v3.js"
_CONFIRM_JS = Path(__file__).resolve().parent / "stripe_js_confirm.js"


async def _stripe_js(request: web.Request) -> web.Response:
    text = _LOCALSTRIPE_JS.read_text() + "\n" + _CONFIRM_JS.read_text()
    return web.Response(text=text, content_type="application/javascript")


for _route in ls_server.app.router.routes():
    if (
        _route.method == "GET"
        and _route.resource is not None
        and _route.resource.canonical == "/js.stripe.com/v3/"
    ):
        _route._handler = _stripe_js
        break
else:  # pragma: no cover - another localstripe version
    raise LookupError("localstripe serves no GET /js.stripe.com/v3/")
