"""Shared parts of the admin: user columns, amounts, JSON display, per-row actions."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from typing import Any

from django.contrib import admin, messages
from django.db import connections, transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from aa_stripe.currencies import from_minor_units
from aa_stripe.exceptions import AaStripeError
from aa_stripe.models import (
    StripeCharge,
)

# The user model may be any STRIPE_USER_MODEL: use the e-mail and username fields it really has.
USER_MODEL: Any = StripeCharge._meta.get_field("user").related_model
_CONCRETE = {field.name for field in USER_MODEL._meta.concrete_fields}
_CANDIDATES = (getattr(USER_MODEL, "EMAIL_FIELD", "email"), getattr(USER_MODEL, "USERNAME_FIELD", None))
USER_FIELDS = tuple(name for name in dict.fromkeys(_CANDIDATES) if name in _CONCRETE)


# Only the currencies in use, not all 135 Stripe settles in.
CURRENCY_FILTER = ("currency", admin.AllValuesFieldListFilter)


def user_search_fields(path: str = "user") -> tuple[str, ...]:
    return tuple(f"{path}__{name}" for name in USER_FIELDS)


def format_amount(amount: int | None, currency: str | None) -> str:
    """Minor units as major units with the currency: ``1050, "usd"`` -> ``10.50 USD``."""
    if amount is None or not currency:
        return "-"
    return f"{from_minor_units(amount, currency)} {currency.upper()}"


def json_display(field: str, description: str) -> Callable[[Any, Model], str]:
    """A read-only column showing a JSON field indented (``exclude`` the raw field)."""

    @admin.display(description=description)
    def display(self: Any, obj: Model) -> str:
        value = getattr(obj, field)
        if not value:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))

    return display


def _non_atomic_requests(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """``transaction.non_atomic_requests`` for every database: a host's ``ATOMIC_REQUESTS`` must
    not wrap these views either (the attribute reaches the URL's view through the admin's wrappers)."""
    for alias in connections:
        view = transaction.non_atomic_requests(using=alias)(view)
    return view


class StripeModelAdmin(admin.ModelAdmin):
    """Shared parts: fields locked once Stripe has the object, display columns, per-row actions."""

    #: read-only once :meth:`is_locked` says the object exists at Stripe
    locked_fields: Sequence[str] = ()

    @_non_atomic_requests
    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # Actions run from here and write to Stripe row by row: under a host's ATOMIC_REQUESTS a
        # rollback after Stripe acted would lose the record of it, and row locks would be held
        # while Stripe answers.
        return super().changelist_view(request, extra_context)

    exclude = ("stripe_response",)

    stripe_response_display = json_display("stripe_response", "Stripe response")

    def is_locked(self, obj: Any) -> bool:
        return bool(getattr(obj, "is_created_at_stripe", False))

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        """In the model's order (editable or not); timestamps and raw Stripe data last."""
        names = [f.name for f in self.model._meta.fields if f.name not in ("id", "created", "updated")]
        rank = {name: i for i, name in enumerate(names)}
        return sorted(super().get_fields(request, obj), key=lambda name: rank.get(name, len(rank)))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        fields = list(super().get_readonly_fields(request, obj))
        # bookkeeping of webhooks and of refunds waiting for Stripe's confirmation
        model_fields = {field.name for field in self.model._meta.fields}
        fields += [
            name
            for name in ("last_event_at", "pending_refund_amount", "source_event_times")
            if name in model_fields
        ]
        if obj is not None and self.is_locked(obj):
            fields += [name for name in self.locked_fields if name not in fields]
        return fields

    @admin.display(description="user", ordering=f"user__{USER_FIELDS[-1]}" if USER_FIELDS else "user")
    def user_display(self, obj: Any) -> str:
        name = obj.user.get_username() if hasattr(obj.user, "get_username") else str(obj.user)
        email = getattr(obj.user, USER_FIELDS[0]) if USER_FIELDS else ""
        return f"{name} <{email}>" if email and email != name else str(name)

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj: Any) -> str:
        return format_amount(obj.amount, obj.currency)

    def run_per_row(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        operation: str | Callable[[Any], object],
        *,
        doing: str,
        done: str,
        **kwargs: Any,
    ) -> None:
        """Call ``operation`` (a callable, or a method name called with ``kwargs``) on each row.

        One error message per row that raised ``AaStripeError`` (naming the row and the error),
        one success message counting the others; any other exception propagates.
        """
        call = operator.methodcaller(operation, **kwargs) if isinstance(operation, str) else operation
        opts = self.model._meta
        succeeded = 0
        for obj in queryset:
            try:
                call(obj)
            except AaStripeError as err:
                label = f"{opts.verbose_name} #{obj.pk} “{obj}”"
                self.message_user(request, f"Could not {doing} {label}: {err.message}", messages.ERROR)
            else:
                succeeded += 1
        if succeeded:
            name = opts.verbose_name if succeeded == 1 else opts.verbose_name_plural
            self.message_user(request, f"{done} {succeeded} {name}.", messages.SUCCESS)


class StripeWritingAdmin(StripeModelAdmin):
    """The admin of a model whose ``save()`` or ``delete()`` writes to Stripe (coupons).

    Django runs the add, change and delete views inside ``transaction.atomic()`` (and
    ``save_model``/``delete_model`` with them), so the write to Stripe would be made inside it: a
    row lock held while Stripe answers, and a rollback after Stripe acted would lose the record of
    what it did. Here those views run without it: the model's methods commit in short transactions
    of their own (plan, then record), with none open while Stripe is called, and the admin's log
    entry follows in autocommit. Writing in ``response_add``/``response_change`` instead would not
    help: Django calls them inside the same atomic block, before it commits; and ``on_commit``
    would run after the form was accepted, too late to show Stripe's refusal as a form error.
    """

    @_non_atomic_requests
    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        return super().add_view(request, form_url, extra_context)

    @_non_atomic_requests
    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return super().change_view(request, object_id, form_url, extra_context)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> HttpResponse:
        return self._changeform_view(request, object_id, form_url, extra_context)  # no atomic block

    @_non_atomic_requests
    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        return self._delete_view(request, object_id, extra_context)  # no atomic block
