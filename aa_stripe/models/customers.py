from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import models, router
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from aa_stripe import stripe_api
from aa_stripe.exceptions import StripeInvalidRequestError, StripeMethodNotAllowed, StripeNoActiveCustomer
from aa_stripe.guard import library_atomic

from .base import USER_MODEL, StripeBasicModel, lock_for_update

#: Rows changed less than this before a list was asked for may hold newer news than the list.
LIST_FRESHNESS_MARGIN = timedelta(seconds=5)


class StripeCustomer(StripeBasicModel):
    """A Stripe customer, created from a stripe.js token (aa-stripe's StripeToken), or without one
    (to save cards with SetupIntents: :meth:`get_or_create_for_user`)."""

    user = models.ForeignKey(USER_MODEL, on_delete=models.CASCADE, related_name="stripe_customers")
    stripe_js_response = models.JSONField(
        blank=True, default=dict, help_text=_("The token object stripe.js returned to the front-end.")
    )
    stripe_customer_id = models.CharField(max_length=255, blank=True, db_index=True)
    is_active = models.BooleanField(default=True)
    is_created_at_stripe = models.BooleanField(default=False)
    sources = models.JSONField(blank=True, default=list, help_text=_("Stripe source objects (cards)."))
    source_event_times = models.JSONField(
        blank=True,
        default=dict,
        help_text=_("Card id -> Stripe time of the last webhook event about that card."),
    )
    last_event_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Stripe's time of the last webhook event applied to this row.")
    )
    default_source = models.CharField(
        max_length=255, blank=True, help_text=_("ID of default source from Stripe")
    )
    default_payment_method = models.CharField(
        max_length=255,
        blank=True,
        help_text=_("invoice_settings.default_payment_method at Stripe (pm_...): wins over default_source."),
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_customer_id"],
                condition=~Q(stripe_customer_id=""),
                name="aa_stripe_unique_stripe_customer_id",
            )
        ]

    def __str__(self) -> str:
        return self.stripe_customer_id or f"StripeCustomer #{self.pk} (not at Stripe)"

    def create_at_stripe(self, description: str | None = None) -> StripeCustomer:
        """Create the customer at Stripe from ``stripe_js_response["id"]`` (a single-use token), or
        without a card when ``stripe_js_response`` is empty (cards are then saved with SetupIntents).
        A stripe.js response without a token (e.g. its ``{"error": ...}``) is refused.

        A durable operation of the journal (:mod:`aa_stripe.operations.journal`): planned and
        committed (a new instance is saved for it) before Stripe is called, recorded after. The
        token names the operation (key ``customer:create:<token>``): a token makes at most one
        customer, whichever row or instance asks.

        - Declined card (or a token Stripe refuses): :class:`StripeCardError`
          (:class:`StripeInvalidRequestError`); nothing is created, and a new instance is not kept.
        - Network error, timeout, 5xx: :class:`StripeInternalError`; the row is kept, not created at
          Stripe, and asking again with the same token (this row, or a new instance: it becomes
          this row) finishes it without a second customer, as ``reconcile_stripe_operations`` does.
        - The token's customer exists already: a new instance becomes that row and is returned;
          another row gets :class:`StripeMethodNotAllowed`, as does this row once created.

        Without a token the operation is the row's (key ``customer:create:row:<pk>:<uuid>``): asking
        again for the same row finishes its unfinished creation instead of making a second customer.
        """
        if not self.stripe_js_response:
            return customer_operations.create_without_token(self, description)
        return customer_operations.create(self, description)

    @classmethod
    def get_or_create_for_user(cls, user: Any, description: str | None = None) -> StripeCustomer:
        """The user's latest active customer at Stripe, or a new one created at Stripe without a card.

        Serialised per user (a lock of the user's row while deciding): two requests at once make one
        customer; a creation left unfinished (a lost answer) is finished instead of starting another.
        """
        return customer_operations.get_or_create_for_user(cls, user, description)

    @property
    def default_payment_method_id(self) -> str:
        """What Stripe charges by default: ``invoice_settings.default_payment_method``, else the
        legacy ``default_source``; "" when neither is set."""
        return self.default_payment_method or self.default_source

    def update_at_stripe(self, params: dict[str, Any]) -> dict[str, Any]:
        """Send an update of the customer (Stripe's ``CustomerUpdateParams``) through the journal, in
        order with its other updates; returns Stripe's customer (applied to this row)."""
        result = customer_operations.update(self, {**params, "expand": ["sources"]})
        self.refresh_from_db()
        return result

    def refresh_payment_methods(self) -> list[Any]:
        """Mirror the customer's payment methods from Stripe (one list, every type); rows of methods
        Stripe no longer lists are deleted. A row a webhook or request changed since the list was
        asked for (a method attached meanwhile) is left to that newer news. Returns the rows."""
        from .payment_methods import StripePaymentMethod

        self._require_stripe_id()
        asked_at = timezone.now() - LIST_FRESHNESS_MARGIN
        listed = list(stripe_api.iterate("payment_methods", {"customer": self.stripe_customer_id}))
        with library_atomic(using=router.db_for_write(type(self), instance=self)):
            lock_for_update(self)
            rows = {
                row.stripe_payment_method_id: row
                for row in StripePaymentMethod.objects.select_for_update().filter(customer=self)
            }
            for data in listed:
                row = rows.pop(data["id"], None)
                if row is None or row.updated < asked_at:
                    StripePaymentMethod.mirror(self, data)
            for gone in rows.values():
                if gone.updated < asked_at:
                    gone.forget()
        return list(StripePaymentMethod.objects.filter(customer=self))

    @classmethod
    def get_latest_active_customer_for_user(cls, user: Any) -> StripeCustomer | None:
        """The user's newest active customer that exists at Stripe, or None (``user``: a user or its pk)."""
        return (
            cls.objects.filter(user_id=getattr(user, "pk", user), is_active=True, is_created_at_stripe=True)
            .order_by("id")
            .last()
        )

    @classmethod
    def get_customer_to_charge(cls, user: Any, preferred: StripeCustomer | None = None) -> StripeCustomer:
        """``preferred`` if it is active at Stripe, else the user's latest active customer.

        ``user`` is a user or its primary key. Raises :class:`StripeNoActiveCustomer` when there is
        none, and refuses a ``preferred`` customer of another user: a charge must never reach
        someone else's card.
        """
        user_id = getattr(user, "pk", user)
        if preferred is not None:
            if preferred.user_id != user_id:
                raise StripeMethodNotAllowed("The customer belongs to another user.")
            if preferred.is_active and preferred.is_created_at_stripe:
                return preferred
        customer = cls.get_latest_active_customer_for_user(user_id)
        if customer is None:
            raise StripeNoActiveCustomer()
        return customer

    def change_description(self, description: str) -> dict[str, Any]:
        """Set the customer's description at Stripe (an operation of the journal); returns Stripe's
        customer."""
        return customer_operations.update(self, {"description": description, "expand": ["sources"]})

    def retrieve_from_stripe(self) -> dict[str, Any]:
        """Stripe's current customer object (with its sources expanded)."""
        self._require_stripe_id()
        return stripe_api.call(
            "customers", "retrieve", self.stripe_customer_id, params={"expand": ["sources"]}
        )

    def refresh_from_stripe(self) -> dict[str, Any]:
        """Update ``sources``, ``default_source``, ``default_payment_method`` (and ``is_active`` if
        deleted) from Stripe, and the customer's payment methods (:meth:`refresh_payment_methods`)."""
        try:
            customer = self.retrieve_from_stripe()
        except StripeInvalidRequestError as err:
            if err.kind != "not_found":
                raise
            self.is_active = False
            self.save(update_fields=["is_active", "updated"])
            raise
        self.update_from_stripe_data(customer)
        if self.is_active:
            self.refresh_payment_methods()
        return customer

    def update_from_stripe_data(
        self, customer: dict[str, Any], commit: bool = True, deleted: bool | None = None
    ) -> None:
        """Apply a Stripe customer object (from an API answer or a webhook) without calling Stripe.

        Tolerates customers without ``sources`` (newer API versions omit it unless expanded)
        and a null ``default_source``. A deleted customer (``deleted``, default: the object's
        own) becomes inactive, keeping what the object says (Stripe's deleted stub says nothing).
        """
        self._apply_stripe_customer(customer)
        if bool(customer.get("deleted")) if deleted is None else deleted:
            self.is_active = False
        if commit:
            self.save()

    def update_sources_from_stripe_data(self, customer: dict[str, Any], commit: bool = True) -> None:
        """Apply only the cards (``sources``, ``default_source``) of a Stripe customer object."""
        if customer.get("deleted"):
            self.update_from_stripe_data(customer, commit=commit)
            return
        self._apply_sources(customer)
        if commit:
            self.save()

    def add_new_source(
        self, source_token: str, stripe_js_response: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Add a card (token from stripe.js) to the customer; it becomes the default source.

        An operation of the journal under the key ``customer:source:<customer>:<token>``: asking
        again with the same token after a lost answer finishes it, never adds the card twice.
        """
        customer = customer_operations.update(
            self,
            {"source": source_token, "expand": ["sources"]},
            key=f"customer:source:{self.stripe_customer_id}:{source_token}",
        )
        if stripe_js_response:
            self.stripe_js_response = stripe_js_response
            self.save(update_fields=["stripe_js_response", "updated"])
        return customer

    @property
    def default_source_data(self) -> dict[str, Any] | None:
        """The default source's Stripe object from ``sources``, or None."""
        if not self.default_source:
            return None
        return next((s for s in self.sources or [] if s.get("id") == self.default_source), None)

    def _apply_stripe_customer(self, customer: dict[str, Any]) -> None:
        if set(customer) <= {"id", "object", "deleted"}:  # Stripe's deleted stub
            return
        self._apply_sources(customer)
        settings = customer.get("invoice_settings")
        if isinstance(settings, dict):
            default = settings.get("default_payment_method")
            self.default_payment_method = (
                default.get("id", "") if isinstance(default, dict) else default
            ) or ""
        self.stripe_response = customer

    def _apply_sources(self, customer: dict[str, Any]) -> None:
        sources = customer.get("sources")
        if isinstance(sources, dict) and "data" in sources:
            self.sources = sources["data"]
        default = customer.get("default_source")
        self.default_source = (default.get("id", "") if isinstance(default, dict) else default) or ""

    def _require_stripe_id(self) -> None:
        if not self.stripe_customer_id:
            raise StripeMethodNotAllowed("This customer is not created at Stripe yet.")


# The journal's customer kinds; imported last, as they need the model.
from . import customer_operations  # noqa: E402
