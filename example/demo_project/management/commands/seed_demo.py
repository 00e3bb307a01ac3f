"""``manage.py seed_demo``: the demo's users, plans and coupon (plans and coupon created at Stripe).

Safe to run again: existing rows are kept, passwords are reset (and printed) on every run.
"""

from __future__ import annotations

import os
import secrets
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from aa_stripe.exceptions import StripeCouponAlreadyExists
from aa_stripe.models import StripeCoupon, StripeSubscriptionPlan

PLANS = [
    {"name": "Demo Basic", "amount": 500, "currency": "usd", "interval": "month"},
    {"name": "Demo Pro", "amount": 4800, "currency": "usd", "interval": "year"},
]
COUPON_ID = "DEMO10"


class Command(BaseCommand):
    help = "Create the demo user, a staff user, two plans and a coupon (at Stripe through aa_stripe)."

    def handle(self, *args: Any, **options: Any) -> None:
        for username, staff in (("demo", False), ("admin", True)):
            password = self._user(username, staff)
            role = "staff, superuser" if staff else "signs in on the demo page"
            self.stdout.write(f"user {username} / password {password} ({role})")
        for spec in PLANS:
            plan = self._plan(spec)
            self.stdout.write(
                f"plan {plan.name}: {plan.amount} {plan.currency} per {plan.interval} ({plan.stripe_plan_id})"
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

    def _plan(self, spec: dict[str, Any]) -> StripeSubscriptionPlan:
        plan = StripeSubscriptionPlan.objects.filter(name=spec["name"]).first()
        if plan is None:
            plan = StripeSubscriptionPlan.objects.create(**spec)
        if not plan.is_created_at_stripe:
            plan.create_at_stripe()
        return plan

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
