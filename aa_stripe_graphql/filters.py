"""FilterSets behind the list arguments of GRAPHQL.md (declared names: createdGte, createdLte, ...)."""

from __future__ import annotations

import django_filters

from aa_stripe.models import StripeCharge, StripeCoupon, StripeCustomer, StripeSubscription


class StripeCustomerFilter(django_filters.FilterSet):
    is_active = django_filters.BooleanFilter()

    class Meta:
        model = StripeCustomer
        fields = ["is_active"]


class StripeChargeFilter(django_filters.FilterSet):
    is_charged = django_filters.BooleanFilter()
    is_refunded = django_filters.BooleanFilter()
    charge_attempt_failed = django_filters.BooleanFilter()
    created_gte = django_filters.IsoDateTimeFilter(field_name="created", lookup_expr="gte")
    created_lte = django_filters.IsoDateTimeFilter(field_name="created", lookup_expr="lte")

    class Meta:
        model = StripeCharge
        fields = ["is_charged", "is_refunded", "charge_attempt_failed"]


class StripeSubscriptionFilter(django_filters.FilterSet):
    status = django_filters.CharFilter()

    class Meta:
        model = StripeSubscription
        fields = ["status"]


class StripeCouponFilter(django_filters.FilterSet):
    is_deleted = django_filters.BooleanFilter()

    class Meta:
        model = StripeCoupon
        fields = ["is_deleted"]
