"""All signals of the library.

``webhook_pre_parse`` is also importable from ``aa_stripe.models``, as in aa-stripe.
"""

from django.dispatch import Signal

#: sent with ``instance`` (the StripeCharge) after Stripe accepted a charge.
stripe_charge_succeeded = Signal()
#: sent with ``instance`` and ``exception`` (a StripeCardError) when the card was declined.
stripe_charge_card_exception = Signal()
#: sent with ``instance`` (the StripeCharge) once per PaymentIntent when the payment waits for the
#: customer (3-D Secure): ask the user back to pay on-session (``payStripeCharge``).
stripe_charge_requires_action = Signal()
#: sent with ``instance`` (the StripeCharge) after each successful refund, partial or full.
stripe_charge_refunded = Signal()
#: sent with ``instance``, ``event_type``, ``event_model`` and ``event_action`` before a
#: StripeWebhook is parsed.
webhook_pre_parse = Signal()
#: sent with ``instance`` (the StripeWebhook) once a new event is stored and committed, before
#: (or, with STRIPE_WEBHOOK_DEFERRED_PARSING, instead of) parsing: hand it to a task queue here.
stripe_webhook_stored = Signal()
#: sent with ``charge`` (the StripeCharge, or None if unknown here), ``dispute`` (Stripe's dispute
#: object), ``event_action`` (created, updated, closed, ...) and ``webhook`` on charge.dispute.* events.
stripe_charge_disputed = Signal()
#: sent with ``invoice`` (the StripeInvoice) and ``subscription`` (its StripeSubscription, or None)
#: once per invoice when a subscription's payment failed (``invoice.payment_failed``): the card was
#: declined; ask the user for another card (pay the invoice on-session with its client secret).
stripe_subscription_payment_failed = Signal()
#: sent with ``invoice`` and ``subscription`` once per invoice when the bank wants the customer to
#: authenticate a subscription's payment (``invoice.payment_action_required``): ask the user back to
#: pay it on-session (``StripeInvoice.client_secret_for_owner()``).
stripe_subscription_payment_action_required = Signal()
