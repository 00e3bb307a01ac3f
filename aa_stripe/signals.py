"""All signals of the library.

``webhook_pre_parse`` is also importable from ``aa_stripe.models``, as in aa-stripe.
"""

from django.dispatch import Signal

#: sent with ``instance`` (the StripeCharge) after Stripe accepted a charge.
stripe_charge_succeeded = Signal()
#: sent with ``instance`` and ``exception`` (a StripeCardError) when the card was declined.
stripe_charge_card_exception = Signal()
#: sent with ``instance`` (the StripeCharge) after each successful refund, partial or full.
stripe_charge_refunded = Signal()
#: sent with ``instance``, ``event_type``, ``event_model`` and ``event_action`` before a
#: StripeWebhook is parsed.
webhook_pre_parse = Signal()
