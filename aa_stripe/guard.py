"""The rule "no write to Stripe while a transaction of the library is open", made checkable.

The library opens its own transactions with :func:`library_atomic`, which marks them (a
context variable, per thread and per async task), and ``stripe_api`` refuses a write to Stripe
while one is open: it raises :class:`StripeWriteInTransaction` when ``STRIPE_TRANSACTION_GUARD`` is
``"raise"`` (the default in DEBUG; the test suite sets it), and logs an error otherwise, since a
production request must not fail because of it. The mark is the library's own because Django's
``in_atomic_block`` cannot tell the library's transactions from a test runner's or a host's.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

from django.conf import settings
from django.db import transaction

from aa_stripe.conf import stripe_settings

logger = logging.getLogger("aa_stripe")

_open: contextvars.ContextVar[int] = contextvars.ContextVar("aa_stripe_library_transactions", default=0)


class StripeWriteInTransaction(RuntimeError):
    """A write to Stripe was attempted while the library held a transaction open: a bug."""


@contextlib.contextmanager
def library_atomic(using: str | None = None) -> Iterator[None]:
    """``transaction.atomic(using)`` marked as the library's own (see the module docstring)."""
    with transaction.atomic(using=using):
        # Marked inside the block: its on-commit callbacks (signals after commit) run after the
        # mark is gone, outside the library's transaction, and may write to Stripe.
        token = _open.set(_open.get() + 1)
        try:
            yield
        finally:
            _open.reset(token)


def in_library_transaction() -> bool:
    return _open.get() > 0


def check_write(description: str) -> None:
    """Called by ``stripe_api`` before every write to Stripe."""
    if not in_library_transaction():
        return
    message = (
        f"aa_stripe wrote to Stripe ({description}) inside one of its own transactions: a row lock "
        "would be held while Stripe answers, and a rollback would lose the record of what Stripe did."
    )
    mode = stripe_settings.TRANSACTION_GUARD or ("raise" if settings.DEBUG else "log")
    if mode == "raise":
        raise StripeWriteInTransaction(message)
    logger.error(message)
