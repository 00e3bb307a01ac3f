from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from aa_stripe import stripe_api
from aa_stripe.currencies import CURRENCY_CHOICES, from_minor_units, to_minor_units, validate_currency
from aa_stripe.exceptions import StripeCouponAlreadyExists, StripeMethodNotAllowed

from .base import StripeBasicModel, timestamp_to_datetime
from .catalog_operations import without_operation_id


class StripeCouponQuerySet(models.QuerySet["StripeCoupon"]):
    def delete(self) -> tuple[int, dict[str, int]]:
        """Delete each coupon at Stripe and mark it deleted; rows are kept."""
        count = 0
        for coupon in self:
            coupon.delete()
            count += 1
        return count, {self.model._meta.label: count}


class StripeCouponManager(models.Manager["StripeCoupon"]):
    """``objects`` hides deleted coupons; ``all_with_deleted()`` shows them."""

    def all_with_deleted(self) -> StripeCouponQuerySet:
        return StripeCouponQuerySet(self.model, using=self._db)

    def deleted(self) -> StripeCouponQuerySet:
        return self.all_with_deleted().filter(is_deleted=True)

    def get_queryset(self) -> StripeCouponQuerySet:
        return self.all_with_deleted().filter(is_deleted=False)


class StripeCoupon(StripeBasicModel):
    """A Stripe coupon. ``save()`` creates it at Stripe (or pushes metadata changes),
    ``delete()`` deletes it at Stripe and keeps the row with ``is_deleted=True``."""

    DURATION_FOREVER = "forever"
    DURATION_ONCE = "once"
    DURATION_REPEATING = "repeating"
    DURATION_CHOICES = (
        (DURATION_FOREVER, DURATION_FOREVER),
        (DURATION_ONCE, DURATION_ONCE),
        (DURATION_REPEATING, DURATION_REPEATING),
    )
    CURRENCY_CHOICES = CURRENCY_CHOICES
    # Stripe cannot change these after creation; only metadata is pushed on later saves.
    IMMUTABLE_FIELDS = (
        "coupon_id",
        "amount_off",
        "currency",
        "duration",
        "duration_in_months",
        "max_redemptions",
        "percent_off",
        "redeem_by",
    )

    coupon_id = models.CharField(max_length=255, help_text=_("Identifier for the coupon"))
    amount_off = models.DecimalField(
        blank=True,
        null=True,
        decimal_places=3,
        max_digits=13,
        help_text=_("Amount in major units of the currency (10 = $10.00) taken off invoices."),
    )
    currency = models.CharField(  # noqa: DJ001 (null kept from aa-stripe: percent_off coupons)
        max_length=3,
        validators=[validate_currency],
        blank=True,
        null=True,
        help_text=_("Currency of amount_off."),
    )
    duration = models.CharField(
        max_length=255,
        choices=DURATION_CHOICES,
        help_text=_("Describes how long a customer who applies this coupon will get the discount."),
    )
    duration_in_months = models.PositiveIntegerField(
        blank=True,
        null=True,
        help_text=_("If duration is repeating, the number of months the coupon applies."),
    )
    livemode = models.BooleanField(default=False, help_text=_("Whether the coupon exists in live mode."))
    max_redemptions = models.PositiveIntegerField(
        blank=True, null=True, help_text=_("How many times the coupon can be redeemed in total.")
    )
    metadata = models.JSONField(blank=True, default=dict, help_text=_("Key/value pairs kept at Stripe."))
    percent_off = models.DecimalField(
        blank=True, null=True, decimal_places=2, max_digits=5, help_text=_("Percent taken off (e.g. 12.5).")
    )
    redeem_by = models.DateTimeField(
        blank=True, null=True, help_text=_("Last moment the coupon can be redeemed.")
    )
    times_redeemed = models.PositiveIntegerField(default=0, help_text=_("How many times it was applied."))
    valid = models.BooleanField(default=False, help_text=_("Whether the coupon can still be applied."))
    created = models.DateTimeField(help_text=_("When Stripe created the coupon."))
    is_deleted = models.BooleanField(default=False)
    is_created_at_stripe = models.BooleanField(default=False)
    last_event_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Stripe's time of the last webhook event applied to this row.")
    )

    objects = StripeCouponManager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["coupon_id"], condition=Q(is_deleted=False), name="aa_stripe_unique_live_coupon_id"
            )
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._remember_state()

    def __str__(self) -> str:
        return self.coupon_id

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        super().refresh_from_db(*args, **kwargs)
        self._remember_state()  # what the database holds now is what Stripe has: nothing to push

    def _remember_state(self) -> None:
        self._previous_is_deleted = self.is_deleted
        self._previous = {name: getattr(self, name) for name in (*self.IMMUTABLE_FIELDS, "metadata")}

    def save(self, force_retrieve: bool = False, *args: Any, **kwargs: Any) -> None:
        """Create the coupon at Stripe, push metadata changes, or delete it at Stripe.

        ``force_retrieve=True`` makes a row from a coupon that already exists at Stripe. Writes to
        Stripe go through the operations journal: no transaction may be open around this call
        (the row is written once Stripe answered, in a transaction of its own). After an unknown
        outcome (:class:`~aa_stripe.exceptions.StripeInternalError`), saving the same coupon again
        (a new instance with the same values, too) finishes the first request instead of making a
        second coupon; so does ``reconcile_stripe_operations``.
        """
        if self.is_deleted and not self._previous_is_deleted:
            coupon_operations.delete(self)
        elif force_retrieve:
            self._adopt_from_stripe()
            self._save_local(*args, **kwargs)
        elif not self.is_created_at_stripe:
            coupon_operations.create(self, self._create_params())
        elif not self.is_deleted and self._metadata_changed():
            coupon_operations.push_metadata(self)
        else:
            self._save_local(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        """Delete at Stripe and keep the row with ``is_deleted=True`` (no row is removed)."""
        if not self.is_deleted:
            self.is_deleted = True
            try:
                self.save()
            except BaseException:
                self.is_deleted = self._previous_is_deleted
                raise
        return 0, {self._meta.label: 0}

    def update_from_stripe_data(
        self,
        stripe_coupon: dict[str, Any],
        exclude_fields: list[str] | None = None,
        commit: bool = True,
        deleted: bool | None = None,
    ) -> None:
        """Apply Stripe's coupon to the row without pushing anything back to Stripe.

        For webhooks and refresh commands; ``commit=False`` only sets the attributes. ``deleted``
        (default: the object's own ``deleted``) marks the coupon deleted after applying what the
        object says; Stripe's deleted stub ``{id, object, deleted}`` keeps the last known data.
        """
        deleted = bool(stripe_coupon.get("deleted")) if deleted is None else deleted
        if not set(stripe_coupon) <= {"id", "object", "deleted"}:
            values = self.values_from_stripe(stripe_coupon)
            for name in exclude_fields or ():
                values.pop(name, None)
            for name, value in values.items():
                setattr(self, name, value)
            self.stripe_response = stripe_coupon
        if deleted:
            self.is_deleted = True
        self.is_created_at_stripe = True
        if commit:
            self._save_local()

    @classmethod
    def values_from_stripe(cls, stripe_coupon: dict[str, Any]) -> dict[str, Any]:
        """Column values for a Stripe coupon object (amounts converted to major units)."""
        currency = stripe_coupon.get("currency")
        amount_off = stripe_coupon.get("amount_off")
        percent_off = stripe_coupon.get("percent_off")
        return {
            "coupon_id": stripe_coupon["id"],
            "amount_off": from_minor_units(amount_off, currency)
            if amount_off is not None and currency
            else None,
            "currency": currency,
            "duration": stripe_coupon.get("duration"),
            "duration_in_months": stripe_coupon.get("duration_in_months"),
            "livemode": bool(stripe_coupon.get("livemode")),
            "max_redemptions": stripe_coupon.get("max_redemptions"),
            # The journal's own key (the id of the operation that last wrote it) is not the host's.
            "metadata": without_operation_id(stripe_coupon).get("metadata") or {},
            "percent_off": Decimal(str(percent_off)) if percent_off is not None else None,
            "redeem_by": timestamp_to_datetime(stripe_coupon.get("redeem_by")),
            "times_redeemed": stripe_coupon.get("times_redeemed") or 0,
            "valid": bool(stripe_coupon.get("valid")),
            "created": timestamp_to_datetime(stripe_coupon.get("created")),
        }

    def _save_local(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        self._remember_state()

    def _create_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "duration": self.duration,
            "metadata": self.metadata or {},
        }
        optional = {
            "id": self.coupon_id or None,
            "currency": self.currency,
            "amount_off": to_minor_units(self.amount_off, self.currency or "") if self.amount_off else None,
            "percent_off": float(self.percent_off) if self.percent_off is not None else None,
            "duration_in_months": self.duration_in_months,
            "max_redemptions": self.max_redemptions,
            "redeem_by": int(self.redeem_by.timestamp()) if self.redeem_by else None,
        }
        params.update({key: value for key, value in optional.items() if value is not None})
        return params

    def _adopt_from_stripe(self) -> None:
        stripe_coupon = stripe_api.call("coupons", "retrieve", self.coupon_id)
        created = timestamp_to_datetime(stripe_coupon["created"])
        existing = (
            StripeCoupon.objects.all_with_deleted().filter(coupon_id=self.coupon_id).exclude(pk=self.pk)
        )
        if existing.filter(created=created).exists():
            raise StripeCouponAlreadyExists()
        # Older coupons with this id were deleted at Stripe when this one was made.
        existing.filter(is_deleted=False).update(is_deleted=True)
        self.update_from_stripe_data(stripe_coupon, commit=False)

    def _metadata_changed(self) -> bool:
        """Whether metadata must be pushed; changes Stripe cannot make raise."""
        changed = [name for name in self.IMMUTABLE_FIELDS if getattr(self, name) != self._previous[name]]
        if changed:
            raise StripeMethodNotAllowed(
                f"Stripe cannot change {', '.join(changed)} of an existing coupon; "
                "create a new coupon instead."
            )
        return self.metadata != self._previous["metadata"]


from . import coupon_operations  # noqa: E402 (registers the journal's coupon kinds; needs the class above)
