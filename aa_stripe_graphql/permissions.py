"""Who may do what (GRAPHQL.md, "Who is who"): checked before any lookup."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.module_loading import import_string

from .errors import permission_denied


def stripe_user(request: HttpRequest) -> Any:
    """The owner of Stripe rows for ``request``: ``request.user`` unless ``STRIPE_GRAPHQL_GET_STRIPE_USER``
    names a function ``f(request) -> user`` (for a ``STRIPE_USER_MODEL`` other than the auth user)."""
    getter = getattr(settings, "STRIPE_GRAPHQL_GET_STRIPE_USER", None)
    if getter:
        return import_string(getter)(request)
    return request.user


def is_signed_in(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated)


def has_perm(request: HttpRequest, codename: str) -> bool:
    """An active user with ``aa_stripe.<codename>`` (superusers have all); ``is_staff`` alone grants none."""
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.has_perm(f"aa_stripe.{codename}"))


def require_signed_in(info: Any) -> None:
    if not is_signed_in(info.context):
        raise permission_denied("You must be signed in.")


def require_perm(info: Any, codename: str) -> None:
    require_signed_in(info)
    if not has_perm(info.context, codename):
        raise permission_denied(f"You need the aa_stripe.{codename} permission.")


def owned_or_all(info: Any, queryset: Any, view_codename: str, owner_field: str = "user") -> Any:
    """All rows for staff with the view permission, the request's own rows for other signed-in
    users, none for anonymous requests."""
    request = info.context
    if not is_signed_in(request):
        return queryset.none()
    if has_perm(request, view_codename):
        return queryset
    owner = stripe_user(request)
    if owner is None:
        return queryset.none()
    return queryset.filter(**{f"{owner_field}_id": owner.pk})
