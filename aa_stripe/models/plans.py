from __future__ import annotations

import uuid
from typing import Any

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from aa_stripe import stripe_api
from aa_stripe.conf import default_currency
from aa_stripe.currencies import validate_currency
from aa_stripe.exceptions import StripeInvalidRequestError, StripeMethodNotAllowed
from aa_stripe.validators import (
    clean_amount,
    require_valid,
    validate_amount_for_currency,
    validate_plan_amount_field,
    validate_statement_descriptor,
    validate_statement_descriptor_field,
    validate_stripe_currency,
)

from .base import StripeBasicModel


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

        The plan id is chosen and saved before the call, so a retry after a lost answer
        finds the plan Stripe already made instead of creating a second one.

        An amount, currency or statement descriptor Stripe would refuse raises
        :class:`~aa_stripe.exceptions.StripeInvalidInput` before anything is saved or sent.
        """
        if self.is_created_at_stripe:
            raise StripeMethodNotAllowed("This plan is already created at Stripe.")
        require_valid("currency", validate_stripe_currency, self.currency)
        amount = require_valid("amount", clean_amount, self.amount, self.currency, allow_zero=True)
        require_valid("statement_descriptor", validate_statement_descriptor, self.statement_descriptor)
        if not self.stripe_plan_id:
            self.stripe_plan_id = f"plan_{uuid.uuid4().hex}"
        self.save()
        product: dict[str, Any] = {"name": self.name}
        if self.statement_descriptor:
            product["statement_descriptor"] = self.statement_descriptor
        params: dict[str, Any] = {
            "id": self.stripe_plan_id,
            "amount": amount,
            "currency": self.currency,
            "interval": self.interval,
            "interval_count": self.interval_count,
            "product": product,
            "metadata": self.metadata or {},
        }
        if self.trial_period_days:
            params["trial_period_days"] = self.trial_period_days
        try:
            plan = stripe_api.call(
                "plans", "create", params=params, idempotency_key=f"plan:{self.stripe_plan_id}"
            )
        except StripeInvalidRequestError as err:
            if err.code != "resource_already_exists":
                raise
            plan = stripe_api.call("plans", "retrieve", self.stripe_plan_id)
            if (plan.get("amount"), plan.get("currency"), plan.get("interval")) != (
                amount,
                self.currency,
                self.interval,
            ):
                raise StripeMethodNotAllowed(
                    f"A different plan with id {self.stripe_plan_id!r} already exists at Stripe."
                ) from err
        self.stripe_response = plan
        self.is_created_at_stripe = True
        self.save()
        return plan
