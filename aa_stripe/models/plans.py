from __future__ import annotations

from typing import Any

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from aa_stripe.conf import default_currency
from aa_stripe.currencies import validate_currency
from aa_stripe.validators import (
    validate_amount_for_currency,
    validate_plan_amount_field,
    validate_statement_descriptor_field,
)

from .base import StripeBasicModel
from .catalog_operations import without_operation_id


class StripeSubscriptionPlan(StripeBasicModel):
    """A recurring price users subscribe to (a Stripe plan with its product)."""

    INTERVAL_DAY = "day"
    INTERVAL_WEEK = "week"
    INTERVAL_MONTH = "month"
    INTERVAL_YEAR = "year"
    INTERVAL_CHOICES = (
        (INTERVAL_DAY, INTERVAL_DAY),
        (INTERVAL_WEEK, INTERVAL_WEEK),
        (INTERVAL_MONTH, INTERVAL_MONTH),
        (INTERVAL_YEAR, INTERVAL_YEAR),
    )

    is_created_at_stripe = models.BooleanField(default=False)
    stripe_plan_id = models.CharField(
        max_length=255,
        blank=True,
        help_text=_("The plan's id at Stripe; generated (random, so it cannot collide) when left blank."),
    )
    source = models.JSONField(
        blank=True, default=dict, help_text=_('Source of the plan, ie: {"prescription": 1}')
    )
    amount = models.BigIntegerField(
        validators=[validate_plan_amount_field],
        help_text=_("In the currency's minor unit (cents for USD); 0 (free) to 99,999,999 (IDR: 12 digits)."),
    )
    currency = models.CharField(max_length=3, default=default_currency, validators=[validate_currency])
    name = models.CharField(
        max_length=255, help_text=_("Name of the plan, to be displayed on invoices and in the web interface.")
    )
    interval = models.CharField(
        max_length=10,
        choices=INTERVAL_CHOICES,
        help_text=_("Specifies billing frequency. Either day, week, month or year."),
    )
    interval_count = models.IntegerField(default=1, validators=[MinValueValidator(1)])
    metadata = models.JSONField(blank=True, default=dict, help_text=_("Key/value pairs sent to Stripe."))
    statement_descriptor = models.CharField(
        max_length=22,
        blank=True,
        validators=[validate_statement_descriptor_field],
        help_text=_(
            "Displayed on your customer's credit card statement: 5 to 22 Latin characters, at least "
            "one letter; empty for none."
        ),
    )
    trial_period_days = models.IntegerField(
        default=0, validators=[MinValueValidator(0)], help_text=_("Trial period in days (0: no trial).")
    )
    # Followed from plan.updated / plan.deleted events (a plan archived or deleted in the dashboard).
    active = models.BooleanField(
        default=True, help_text=_("Whether Stripe takes new subscriptions to it (false: archived).")
    )
    is_deleted = models.BooleanField(default=False, help_text=_("Deleted at Stripe (the row is kept)."))
    last_event_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Stripe's time of the last webhook event applied to this row.")
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_plan_id"],
                condition=~Q(stripe_plan_id=""),
                name="aa_stripe_unique_stripe_plan_id",
            )
        ]

    def clean(self) -> None:
        """Checks the field validators cannot make alone: the amount in its currency (maximum, step)."""
        super().clean()
        validate_amount_for_currency(self.amount, self.currency, allow_zero=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.stripe_plan_id or 'not at Stripe'})"

    def create_at_stripe(self) -> dict[str, Any]:
        """Create the plan (and its product, by name) at Stripe; returns Stripe's plan.

        The plan id is chosen and saved, and the request frozen in the operations journal, before
        anything is sent. When the outcome is unknown (:class:`~aa_stripe.exceptions.StripeInternalError`)
        the row is kept; calling this again (or ``reconcile_stripe_operations``) sends that same
        request with the same key, or finds the plan Stripe made, and never makes a second one.

        An amount, currency or statement descriptor Stripe would refuse raises
        :class:`~aa_stripe.exceptions.StripeInvalidInput` before anything is saved or sent.
        """
        return plan_operations.create(self)

    def update_from_stripe_data(self, stripe_plan: dict[str, Any], deleted: bool = False) -> None:
        """Apply Stripe's plan to the row without pushing anything back (webhooks): what the
        dashboard can change (active, metadata, trial days) and what Stripe says it is. Stripe's
        deleted stub ``{id, object, deleted}`` keeps the last known values; ``deleted`` marks the
        row deleted. ``is_created_at_stripe`` stays the journal's to set."""
        if not set(stripe_plan) <= {"id", "object", "deleted"}:
            product = stripe_plan.get("product")
            for name in ("amount", "currency", "interval", "interval_count"):
                if stripe_plan.get(name) is not None:  # a tiered plan has no amount
                    setattr(self, name, stripe_plan[name])
            self.trial_period_days = stripe_plan.get("trial_period_days") or 0
            self.active = bool(stripe_plan.get("active"))
            self.metadata = without_operation_id(stripe_plan).get("metadata") or {}
            if isinstance(product, dict) and product.get("name"):  # expanded: its name is the plan's
                self.name = product["name"]
            self.stripe_response = stripe_plan
        if deleted or stripe_plan.get("deleted"):
            self.is_deleted = True
        self.save()

    @property
    def creation_unfinished(self) -> bool:
        """Whether a creation at Stripe was started and its outcome is not known yet."""
        return self.pk is not None and plan_operations.unfinished_operation(self) is not None

    @classmethod
    def unfinished_like(cls, plan: StripeSubscriptionPlan) -> StripeSubscriptionPlan | None:
        """The saved plan whose creation is unfinished and sends what ``plan``'s would: asking
        again for the same plan (a retry after an unknown outcome) should finish that row."""
        return plan_operations.unfinished_like(plan)


from . import plan_operations  # noqa: E402 (registers the journal's plan kind; needs the class above)
