"""The shape every mutation shares: Relay input, ``errors: [StripeError!]!``, masked failures."""

from __future__ import annotations

import json
from typing import Any

import graphene
from graphene import relay
from graphql import GraphQLError
from graphql_relay import from_global_id

from aa_stripe.error_codes import ErrorCode
from aa_stripe.exceptions import AaStripeError

from ..errors import StripeError, error_from_exception, internal_error, logger, stripe_error


class UserError(Exception):
    """An input problem found before Stripe is called; becomes one entry of ``errors``."""

    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.error = stripe_error(code, message, field)


class StripeMutation(relay.ClientIDMutation):
    """Base class: subclasses implement ``perform(info, **input) -> dict`` (payload fields)."""

    errors = graphene.List(
        graphene.NonNull(StripeError), required=True, description="What the person can fix; empty on success."
    )

    class Meta:
        abstract = True

    @classmethod
    def mutate_and_get_payload(cls, root: Any, info: Any, **data: Any) -> Any:
        try:
            return cls(errors=[], **cls.perform(info, **data))
        except UserError as err:
            return cls(errors=[err.error])
        except AaStripeError as err:
            return cls(errors=[error_from_exception(err)])
        except GraphQLError:
            raise
        except Exception as err:
            logger.exception("Unexpected error in mutation %s", cls.__name__)
            raise internal_error() from err

    @classmethod
    def perform(cls, info: Any, **data: Any) -> dict[str, Any]:
        raise NotImplementedError


def object_from_global_id(global_id: str, node_type: type, queryset: Any, field: str, info: Any) -> Any:
    """The row behind ``global_id`` that ``info``'s user may see, else ``NOT_FOUND`` on ``field``:
    another user's object looks exactly like an unknown one."""
    try:
        type_name, pk = from_global_id(global_id)
    except Exception:
        type_name, pk = "", ""
    if type_name != node_type._meta.name or not pk:
        raise UserError(ErrorCode.NOT_FOUND, f"No {node_type._meta.name} with this id.", field)
    try:
        found = node_type.get_queryset(queryset, info).filter(pk=pk).first()
    except (ValueError, TypeError):
        found = None
    if found is None:
        raise UserError(ErrorCode.NOT_FOUND, f"No {node_type._meta.name} with this id.", field)
    return found


def json_object(value: Any, field: str, *, required: bool = True) -> dict[str, Any] | None:
    """A JSONString input that must hold a JSON object."""
    if value is None:
        if required:
            raise UserError(ErrorCode.REQUIRED, "This field is required.", field)
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise UserError(ErrorCode.INVALID, "Not valid JSON.", field) from None
    if not isinstance(value, dict):
        raise UserError(ErrorCode.INVALID, "Must be a JSON object.", field)
    return value
