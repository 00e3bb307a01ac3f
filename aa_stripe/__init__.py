"""Stripe for Django: customers, charges, refunds, plans, subscriptions, coupons and webhooks."""

__version__ = "1.0.0.dev0"
