"""Backwards-compatible import path of aa-stripe: ``from aa_stripe.settings import stripe_settings``."""

from aa_stripe.conf import stripe_settings

__all__ = ["stripe_settings"]
