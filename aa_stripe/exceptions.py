"""One exception tree rooted at :class:`AaStripeError`; aa-stripe's names are kept.

Errors that Stripe answered are :class:`StripeAPIError` subclasses carrying Stripe's code,
decline code, HTTP status and JSON body, so code using this library never needs to import
``stripe`` to tell a declined card from an outage.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _


class AaStripeError(Exception):
    """Root of every exception this library raises."""

    details: Any = _("Stripe error")

    def __init__(self, message: Any = None, *args: Any) -> None:
        super().__init__(message if message is not None else self.details, *args)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else str(self.details)


class StripeMethodNotAllowed(AaStripeError):
    """The object is not in a state that allows this operation."""

    details = _("Already created at stripe")


class StripeNoActiveCustomer(StripeMethodNotAllowed):
    """The user has no active customer created at Stripe, so there is nothing to charge."""

    details = _("The user has no active Stripe customer.")


class StripeAlreadyCanceled(StripeMethodNotAllowed):
    """The subscription is already canceled (or set to end at the period end)."""

    details = _("The subscription is already canceled.")


class StripeWebhookAlreadyParsed(AaStripeError):
    details = _("This webhook has already been parsed")


class StripeWebhookParseError(AaStripeError):
    details = _("Unable to parse webhook")


class StripeWebhookRejected(AaStripeError):
    """A delivery to the webhook endpoint is not a valid, signed Stripe event (answered 400)."""

    details = _("Invalid webhook delivery")


class StripeCouponAlreadyExists(AaStripeError):
    details = _("Coupon with this coupon_id and creation date already exists")


class StripeAPIError(AaStripeError):
    """Stripe (or the network between us) answered with an error."""

    details = _("Stripe API error")

    def __init__(
        self,
        message: Any = None,
        *,
        code: str | None = None,
        decline_code: str | None = None,
        http_status: int | None = None,
        json_body: dict[str, Any] | None = None,
        request_id: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.decline_code = decline_code
        self.http_status = http_status
        self.json_body = json_body or {}
        self.request_id = request_id
        self.param = param


class StripeInternalError(StripeAPIError):
    """A transient failure: network error, timeout, 5xx or rate limit.

    The outcome at Stripe is unknown; the operation is safe to retry with the same
    idempotency key, which this library does by keeping the row retryable.
    """

    details = _("Temporary Stripe API error")


class StripeCardError(StripeAPIError):
    """The card was declined (``decline_code`` says why; ``authentication_required`` means 3-D Secure)."""

    details = _("The card was declined")


class StripeInvalidRequestError(StripeAPIError):
    """Stripe refused the request's parameters or the object does not exist (``code`` says which)."""

    details = _("Invalid request to Stripe")


class StripeAuthenticationError(StripeAPIError):
    """The API key is missing, wrong or lacks permission."""

    details = _("Stripe rejected the API key")


class StripeIdempotencyError(StripeAPIError):
    """An idempotency key was reused with other parameters (a bug, never retried)."""

    details = _("Idempotency key reused with different parameters")


class StripeInvalidInput(AaStripeError, ValueError):
    """An amount, currency or statement descriptor that Stripe would refuse; nothing was sent.

    Raised by ``StripeCharge.charge()``/``refund()`` and ``StripeSubscriptionPlan.create_at_stripe()``
    before any request and before anything is saved. ``field`` names the model field (``amount``,
    ``currency``, ``statement_descriptor``) and ``code`` is the Django validation code
    (see :mod:`aa_stripe.validators`). A ``ValueError``, so ``except ValueError`` catches it too.
    """

    details = _("Invalid input: nothing was sent to Stripe")

    def __init__(self, message: Any = None, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.code = code
