"""Django admin for support staff: find a payment, see what Stripe said, refund, charge, cancel, refresh.

Stripe-owned columns are read-only. The actions call the model methods row by row: a Stripe
error on one row becomes an error message naming that row, and the other rows are still processed.
"""

from . import invoices, operations, payment_methods, payments, products, subscriptions, webhooks

__all__ = ["invoices", "operations", "payment_methods", "payments", "products", "subscriptions", "webhooks"]
