"""Products and prices: Stripe's catalog today (plans are its legacy form, kept in ``plans``).

Both are mirrored: made here with ``create_at_stripe()`` (through the operations journal), or in
Stripe's dashboard and brought here by webhooks (``product.*``, ``price.*``) and
``refresh_prices``. A price names its product by Stripe id (``product_id`` holds ``prod_...``,
with no database constraint): Stripe delivers a price's events before its product's as often as
after, and the price row cannot wait for the product row; the two join once both are here.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from aa_stripe.conf import default_currency
from aa_stripe.currencies import validate_currency
from aa_stripe.validators import (
    validate_amount_for_currency,
    validate_plan_amount_field,
    validate_recurring,
)

from .base import StripeBasicModel
from .catalog_operations import without_operation_id

#: A product or price Stripe sells now: created there, active, not deleted.
SELLABLE = Q(is_created_at_stripe=True, active=True, is_deleted=False)


def new_product_id() -> str:
    """A product id of our own: random, so two environments sharing a Stripe account never collide,
    and known before Stripe is called, so a creation whose answer was lost is found by retrieving it."""
    return f"prod_{uuid.uuid4().hex}"


def is_stub(data: dict[str, Any]) -> bool:
    """Stripe's answer for a deleted object, ``{id, object, deleted}``: it says nothing else."""
    return set(data) <= {"id", "object", "deleted"}


class StripeCatalogModel(StripeBasicModel):
    """What products and prices share: Stripe's ``active`` and ``metadata``, and the bookkeeping
    of mirrored rows."""

    active = models.BooleanField(default=True, help_text=_("Whether Stripe sells it now (false: archived)."))
    metadata = models.JSONField(blank=True, default=dict, help_text=_("Key/value pairs kept at Stripe."))
    is_created_at_stripe = models.BooleanField(default=False)
    is_deleted = models.BooleanField(default=False, help_text=_("Deleted at Stripe (the row is kept)."))
    last_event_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Stripe's time of the last webhook event applied to this row.")
    )

    class Meta:
        abstract = True

    @property
    def is_sellable(self) -> bool:
        """For sale now: created at Stripe, active, not deleted (``SELLABLE`` as a query)."""
        return self.is_created_at_stripe and self.active and not self.is_deleted

    @classmethod
    def values_from_stripe(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Column values for Stripe's object (for refresh_prices' bulk writes, too)."""
        raise NotImplementedError

    def update_from_stripe_data(
        self, data: dict[str, Any], deleted: bool = False, commit: bool = True
    ) -> None:
        """Apply Stripe's object to the row without pushing anything back (webhooks, refresh_prices,
        the journal's recorder). Stripe's deleted stub ``{id, object, deleted}`` keeps the last
        known values; ``deleted`` marks the row deleted. ``is_created_at_stripe`` is the caller's
        to set: a row whose own creation is unfinished stays so until the journal records it."""
        if not is_stub(data):
            for name, value in self.values_from_stripe(data).items():
                setattr(self, name, value)
            self.stripe_response = data
        if deleted or data.get("deleted"):
            self.is_deleted = True
        if commit:
            self.save()

    @staticmethod
    def metadata_from_stripe(data: dict[str, Any]) -> dict[str, Any]:
        # The journal's own key (the id of the operation that made it) is not the host's.
        return without_operation_id(data).get("metadata") or {}


class StripeProduct(StripeCatalogModel):
    """What is sold (Stripe's Product); its prices say for how much."""

    stripe_product_id = models.CharField(
        max_length=255,
        unique=True,
        default=new_product_id,
        help_text=_("The product's id at Stripe (random unless set)."),
    )
    name = models.CharField(max_length=5000, help_text=_("Shown to customers."))
    description = models.TextField(blank=True, help_text=_("A longer text for customers."))

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def values_from_stripe(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "stripe_product_id": data["id"],
            "name": data.get("name") or "",
            "description": data.get("description") or "",
            "active": bool(data.get("active")),
            "metadata": cls.metadata_from_stripe(data),
        }

    def create_at_stripe(self) -> dict[str, Any]:
        """Create the product at Stripe under its own id; returns Stripe's product.

        The row is saved and the request frozen in the operations journal before anything is sent.
        After an unknown outcome (:class:`~aa_stripe.exceptions.StripeInternalError`) the row is kept
        (``creation_unfinished``); calling this again, or ``reconcile_stripe_operations``, sends the
        same request with the same key or finds the product, and never makes a second one.
        """
        return product_operations.create_product(self)

    @property
    def creation_unfinished(self) -> bool:
        """Whether a creation at Stripe was started and its outcome is not known yet."""
        return self.pk is not None and product_operations.unfinished(self) is not None

    @classmethod
    def unfinished_like(cls, product: StripeProduct) -> StripeProduct | None:
        """The saved product whose creation is unfinished and sends what ``product``'s would."""
        return product_operations.unfinished_product_like(product)


class StripePrice(StripeCatalogModel):
    """How much a product costs, once or per billing period (Stripe's Price)."""

    INTERVAL_CHOICES = (("day", "day"), ("week", "week"), ("month", "month"), ("year", "year"))

    stripe_price_id = models.CharField(
        max_length=255, blank=True, help_text=_("The price's id at Stripe (Stripe chooses it).")
    )
    product = models.ForeignKey(
        StripeProduct,
        to_field="stripe_product_id",
        # By Stripe id and without a constraint: events may bring a price before its product.
        db_constraint=False,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="prices",
        help_text=_("The product priced (its Stripe id; the row may arrive after the price's)."),
    )
    unit_amount = models.BigIntegerField(
        null=True,
        blank=True,
        validators=[validate_plan_amount_field],
        help_text=_(
            "In the currency's minor unit (cents for USD); 0 is free. Empty for prices Stripe computes "
            "otherwise (tiers, amounts the customer chooses), made in the dashboard."
        ),
    )
    currency = models.CharField(max_length=3, default=default_currency, validators=[validate_currency])
    recurring_interval = models.CharField(
        max_length=10,
        choices=INTERVAL_CHOICES,
        blank=True,
        help_text=_("Billing period unit of a recurring price; empty for a one-time price."),
    )
    recurring_interval_count = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("Billing period length, in intervals (1 when empty).")
    )
    nickname = models.CharField(max_length=5000, blank=True, help_text=_("Hidden from customers."))
    lookup_key = models.CharField(
        max_length=200,
        blank=True,
        help_text=_("A name of your own to find the price by (unique across the account's prices)."),
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_price_id"],
                condition=~Q(stripe_price_id=""),
                name="aa_stripe_unique_stripe_price_id",
            )
        ]
        # Not unique here: Stripe moves a key between prices (transfer_lookup_key) and the two
        # prices' events may arrive in either order.
        indexes = [models.Index(fields=["lookup_key"], name="aa_stripe_price_lookup_key")]

    def __str__(self) -> str:
        return self.nickname or self.lookup_key or self.stripe_price_id or f"price #{self.pk}"

    def clean(self) -> None:
        """Checks the field validators cannot make alone: the amount in its currency (maximum, step)
        and the billing period (at most three years)."""
        super().clean()
        errors: dict[str, Any] = {}
        if self.unit_amount is not None:
            try:
                validate_amount_for_currency(self.unit_amount, self.currency, allow_zero=True)
            except ValidationError as err:
                errors["unit_amount"] = err.error_dict["amount"]  # the helper names plans' field
        try:
            validate_recurring(self.recurring_interval, self.recurring_interval_count)
        except ValidationError as err:
            errors["recurring_interval_count"] = err
        if errors:
            raise ValidationError(errors)

    @classmethod
    def values_from_stripe(cls, data: dict[str, Any]) -> dict[str, Any]:
        product = data.get("product")
        recurring = data.get("recurring") or {}
        return {
            "stripe_price_id": data["id"],
            "product_id": (product.get("id") if isinstance(product, dict) else product) or None,
            "unit_amount": data.get("unit_amount"),
            "currency": data.get("currency") or "",
            "recurring_interval": recurring.get("interval") or "",
            "recurring_interval_count": recurring.get("interval_count") if recurring else None,
            "nickname": data.get("nickname") or "",
            "lookup_key": data.get("lookup_key") or "",
            "active": bool(data.get("active")),
            "metadata": cls.metadata_from_stripe(data),
        }

    def create_at_stripe(self) -> dict[str, Any]:
        """Create the price at Stripe; returns Stripe's price.

        Raises before anything is saved or sent: :class:`~aa_stripe.exceptions.StripeInvalidInput`
        for an amount, currency or billing period Stripe would refuse, or no product;
        :class:`~aa_stripe.exceptions.StripeProductNotSellable` when the product is not active at
        Stripe; :class:`~aa_stripe.exceptions.StripeLookupKeyInUse` when another price has the
        lookup key (also when Stripe says so). After an unknown outcome the row is kept
        (``creation_unfinished``) and finished as products are.
        """
        return product_operations.create_price(self)

    @property
    def creation_unfinished(self) -> bool:
        """Whether a creation at Stripe was started and its outcome is not known yet."""
        return self.pk is not None and product_operations.unfinished(self) is not None

    @classmethod
    def unfinished_like(cls, price: StripePrice) -> StripePrice | None:
        """The saved price whose creation is unfinished and sends what ``price``'s would."""
        return product_operations.unfinished_price_like(price)


from . import product_operations  # noqa: E402 (registers the journal's kinds; needs the classes above)
