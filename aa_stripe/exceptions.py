"""One exception tree rooted at :class:`AaStripeError`; aa-stripe's names are kept.

Errors that Stripe answered are :class:`StripeAPIError` subclasses carrying Stripe's code,
decline code, HTTP status and JSON body, so code using this library never needs to import
``stripe`` to tell a declined card from an outage.

Every exception also says what kind of failure it is (:attr:`AaStripeError.kind`), so that a
front door (the GraphQL API, a host's own views) can pick its answer without a chain of
``isinstance`` checks that would have to follow this tree.
"""

from __future__ import annotations

from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

FailureKind = Literal[
    "invalid",
    "not_found",
    "already_exists",
    "not_allowed",
    "in_progress",
    "no_active_customer",
    "card_declined",
    "authentication_required",
    "stripe_unavailable",
    "stripe_error",
]


class AaStripeError(Exception):
    """Root of every exception this library raises.

    ``kind`` is what kind of failure it is, one of :data:`FailureKind`:

    ``invalid``
        The input or the request cannot be accepted as it is.
    ``not_found``
        The object does not exist (at Stripe).
    ``already_exists``
        An object with this identifier exists already.
    ``not_allowed``
        The object's state does not allow this (created already, canceled already, ...).
    ``in_progress``
        Another write to Stripe for this object is in flight; try again once it is finished.
    ``no_active_customer``
        The user has no active Stripe customer, so there is nothing to charge.
    ``card_declined``
        The card was declined.
    ``authentication_required``
        The payment waits for the customer (3-D Secure, another card, or a card not given yet): the
        object was made; its owner finishes on-session with its client secret.
    ``stripe_unavailable``
        Stripe did not answer or failed for now: the outcome is unknown, a retry is safe.
    ``stripe_error``
        Stripe refused for a reason the person using the site cannot fix (API key, a reused
        idempotency key, ...).

    Subclasses set it as a class attribute; a host's own subclass inherits its parent's.
    """

    details: Any = _("Stripe error")
    kind: FailureKind = "invalid"

    def __init__(self, message: Any = None, *args: Any) -> None:
        super().__init__(message if message is not None else self.details, *args)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else str(self.details)


class StripeMethodNotAllowed(AaStripeError):
    """The object is not in a state that allows this operation."""

    details = _("Already created at stripe")
    kind = "not_allowed"


class StripeOperationInProgress(StripeMethodNotAllowed):
    """Another write to Stripe for this object is in flight (another worker, request or host):
    nothing was sent. Try again once it is finished (``reconcile_stripe_operations`` finishes
    operations whose worker died)."""

    details = _("Another Stripe operation for this object is in progress.")
    kind = "in_progress"


class StripeNoActiveCustomer(StripeMethodNotAllowed):
    """The user has no active customer created at Stripe, so there is nothing to charge."""

    details = _("The user has no active Stripe customer.")
    kind = "no_active_customer"


class StripeSubscriptionIncomplete(AaStripeError):
    """The subscription was made at Stripe but its first payment waits for the customer (status
    ``incomplete``): nothing is paid yet, so give nothing away.

    ``subscription`` is the row; ``payment_attempted`` is True when a card was charged and the bank
    wants the customer to authenticate (or declined it), False when no card was given (stripe.js
    collects one). Either way the owner finishes in the browser with
    ``subscription.client_secret_for_owner()``; subscribing again returns this same subscription
    while it waits. Stripe lets it lapse (``incomplete_expired``) after 23 hours unpaid.
    """

    details = _("The subscription's first payment waits for the customer.")
    kind = "authentication_required"

    def __init__(
        self, message: Any = None, *, subscription: Any = None, payment_attempted: bool = False
    ) -> None:
        super().__init__(message)
        self.subscription = subscription
        self.payment_attempted = payment_attempted


class StripeAlreadyCanceled(StripeMethodNotAllowed):
    """The subscription is already canceled (or set to end at the period end)."""

    details = _("The subscription is already canceled.")
    kind = "not_allowed"


class StripeWebhookAlreadyParsed(AaStripeError):
    details = _("This webhook has already been parsed")
    kind = "not_allowed"


class StripeWebhookParseError(AaStripeError):
    details = _("Unable to parse webhook")
    kind = "invalid"


class StripeWebhookRejected(AaStripeError):
    """A delivery to the webhook endpoint is not a valid, signed Stripe event (answered 400)."""

    details = _("Invalid webhook delivery")
    kind = "invalid"


class StripeTaskFailed(AaStripeError):
    """A task of :mod:`aa_stripe.tasks` could not do its work (the task backend records it as failed);
    the message says why. Nothing is lost: the row keeps what the cron commands need to finish it."""

    details = _("The Stripe task failed")
    kind = "stripe_error"


class StripeCouponAlreadyExists(AaStripeError):
    details = _("Coupon with this coupon_id and creation date already exists")
    kind = "already_exists"


class StripeProductNotSellable(StripeMethodNotAllowed):
    """The product of a new price is not created at Stripe, is archived (inactive) or deleted:
    no price is added to it. ``field`` names the input it is about."""

    details = _("The product is not active at Stripe")
    field = "product"


class StripeLookupKeyInUse(AaStripeError):
    """Another price has this lookup key already (Stripe keeps them unique across an account)."""

    details = _("Another price uses this lookup key")
    kind = "already_exists"
    field = "lookup_key"


class StripeNotConfigured(AaStripeError, ImproperlyConfigured):
    """``STRIPE_API_KEY`` is not set, so nothing can be asked of Stripe (``manage.py check`` says so
    as ``aa_stripe.E001`` outside DEBUG). Also an ``ImproperlyConfigured``."""

    details = _("STRIPE_API_KEY is not set: aa_stripe cannot call Stripe.")
    kind = "stripe_error"


class StripeAPIError(AaStripeError):
    """Stripe (or the network between us) answered with an error."""

    details = _("Stripe API error")
    kind = "stripe_error"

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
    kind = "stripe_unavailable"


class StripeCardError(StripeAPIError):
    """The card was declined (``decline_code`` says why; ``authentication_required`` means 3-D Secure)."""

    details = _("The card was declined")
    kind = "card_declined"


class StripeInvalidRequestError(StripeAPIError):
    """Stripe refused the request's parameters or the object does not exist (``code`` says which).

    Its ``kind`` follows ``code``: ``not_found`` for ``resource_missing``, else ``invalid``.
    """

    details = _("Invalid request to Stripe")

    # A property: Stripe answers a missing object and refused parameters with the same error type.
    @property
    def kind(self) -> FailureKind:
        return "not_found" if self.code == "resource_missing" else "invalid"


class StripeAuthenticationError(StripeAPIError):
    """The API key is missing, wrong or lacks permission."""

    details = _("Stripe rejected the API key")
    kind = "stripe_error"


class StripeIdempotencyError(StripeAPIError):
    """An idempotency key was reused with other parameters (a bug, never retried)."""

    details = _("Idempotency key reused with different parameters")
    kind = "stripe_error"


class StripePaymentMethodExpired(AaStripeError):
    """An expired card was asked to become the default payment method; nothing was sent."""

    details = _("This card has expired.")
    kind = "invalid"


class StripeSetupIntentNotSucceeded(AaStripeError):
    """A SetupIntent was asked to be completed while it failed or still waits for the customer;
    nothing was saved. ``status`` is the SetupIntent's status, ``code`` its last error's code."""

    details = _("The SetupIntent has not succeeded: nothing was saved")
    kind = "invalid"

    def __init__(self, message: Any = None, *, status: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class StripeInvalidInput(AaStripeError, ValueError):
    """An amount, currency or statement descriptor that Stripe would refuse; nothing was sent.

    Raised by ``StripeCharge.charge()``/``refund()`` and ``StripeSubscriptionPlan.create_at_stripe()``
    before any request and before anything is saved. ``field`` names the model field (``amount``,
    ``currency``, ``statement_descriptor``) and ``code`` is the Django validation code
    (see :mod:`aa_stripe.validators`). A ``ValueError``, so ``except ValueError`` catches it too.
    """

    details = _("Invalid input: nothing was sent to Stripe")
    kind = "invalid"

    def __init__(self, message: Any = None, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.code = code
