"""``manage.py seed_demo``: the demo's users, prices and coupon (products, prices and coupon created at
Stripe through the library's own methods).

Safe to run again: existing rows are kept, passwords are reset (and printed) on every run.
"""

from __future__ import annotations

import os
import secrets
from decimal import Decimal
from io import StringIO
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from aa_stripe.exceptions import StripeCouponAlreadyExists
from aa_stripe.models import StripeCoupon, StripePrice, StripeProduct

# One product per offer, each with one recurring price (the page shows the product's name).
PRICES = [
    {
        "product": "Demo Basic",
        "unit_amount": 500,
        "currency": "usd",
        "interval": "month",
        "key": "demo-basic",
    },
    {"product": "Demo Pro", "unit_amount": 4800, "currency": "usd", "interval": "year", "key": "demo-pro"},
]
COUPON_ID = "DEMO10"


class Command(BaseCommand):
    help = "Create the demo user, a staff user, two prices and a coupon (at Stripe through aa_stripe)."

    def handle(self, *args: Any, **options: Any) -> None:
        for username, staff in (("demo", False), ("admin", True)):
            password = self._user(username, staff)
            role = "staff, superuser" if staff else "signs in on the demo page"
            self.stdout.write(f"user {username} / password {password} ({role})")
        for spec in PRICES:
            price = self._price(spec)
            self.stdout.write(
                f"price {price.product.name}: {price.unit_amount} {price.currency} per "
                f"{price.recurring_interval} ({price.stripe_price_id})"
            )
        coupon = self._coupon()
        self.stdout.write(
            f"coupon {coupon.coupon_id}: {float(coupon.percent_off or 0):g}% off the first invoice"
        )

    def _user(self, username: str, staff: bool) -> str:
        password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.is_staff = user.is_superuser = staff
        user.email = f"{username}@example.com"
        user.set_password(password)
        user.save()
        return password

    def _price(self, spec: dict[str, Any]) -> StripePrice:
        at_stripe = StripePrice.objects.filter(lookup_key=spec["key"], is_created_at_stripe=True).first()
        if at_stripe is None and not settings.STRIPE_API_BASE:
            # Real Stripe test mode with a new database: the catalog of an earlier run is mirrored
            # first, so nothing is made twice there.
            call_command("refresh_prices", stdout=StringIO())
            at_stripe = StripePrice.objects.filter(lookup_key=spec["key"], is_created_at_stripe=True).first()
        if at_stripe is not None:
            return at_stripe
        products = StripeProduct.objects.filter(name=spec["product"], is_deleted=False)
        product = products.filter(is_created_at_stripe=True).first() or products.first()
        if product is None:
            product = StripeProduct.objects.create(name=spec["product"])
        if not product.is_created_at_stripe:
            product.create_at_stripe()
        price = StripePrice.objects.filter(lookup_key=spec["key"]).first() or StripePrice(
            product=product,
            unit_amount=spec["unit_amount"],
            currency=spec["currency"],
            recurring_interval=spec["interval"],
            recurring_interval_count=1,
            lookup_key=spec["key"],
        )
        price.create_at_stripe()
        return price

    def _coupon(self) -> StripeCoupon:
        live = StripeCoupon.objects.filter(coupon_id=COUPON_ID, is_deleted=False).first()
        if live is not None:
            return live
        coupon = StripeCoupon(
            coupon_id=COUPON_ID, percent_off=Decimal(10), duration=StripeCoupon.DURATION_ONCE
        )
        try:
            with transaction.atomic():
                coupon.save()
        except StripeCouponAlreadyExists:
            # Real Stripe test mode with a new database: the coupon is there from an earlier run.
            coupon = StripeCoupon(coupon_id=COUPON_ID)
            coupon.save(force_retrieve=True)
        return coupon
