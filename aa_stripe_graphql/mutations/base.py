"""The shape every mutation shares: Relay input, ``errors: [StripeError!]!``, masked failures."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import graphene
from django.core.exceptions import ValidationError
from django.db.models import Model
from graphene import relay
from graphene.utils.str_converters import to_camel_case
from graphql import GraphQLError
from graphql_relay import from_global_id

from aa_stripe.exceptions import AaStripeError

from .. import idempotency
from ..errors import (
    StripeError,
    StripeErrorCode,
    error_from_exception,
    internal_error,
    logger,
    permission_denied,
    stripe_error,
)
from ..permissions import require_signed_in, stripe_user

_REQUIRED_CODES = frozenset({"blank", "null", "required"})
_CLIENT_MUTATION_ID = "Any string; the payload hands it back unchanged, to match answers to requests."


class UserError(Exception):
    """Input problems found before Stripe is called; each becomes one entry of ``errors``."""

    def __init__(self, code: StripeErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.errors = [stripe_error(code, message, field)]

    @classmethod
    def from_validation_error(cls, error: ValidationError, fields: dict[str, str]) -> UserError:
        """One entry per message of a model's ``full_clean()``; ``fields`` maps model field names to
        input names (others become camelCase)."""
        found = []
        for name, problems in error.error_dict.items():
            field = fields.get(name, to_camel_case(name)) if name != "__all__" else None
            for problem in problems:
                code = (
                    StripeErrorCode.REQUIRED if problem.code in _REQUIRED_CODES else StripeErrorCode.INVALID
                )
                found.append(stripe_error(code, " ".join(problem.messages), field))
        user_error = cls(StripeErrorCode.INVALID, "Invalid input.")
        user_error.errors = found or user_error.errors
        return user_error


class StripeMutation(relay.ClientIDMutation):
    """Base class: subclasses implement ``perform(info, **input) -> dict`` (payload fields).

    ``perform`` may return ``errors`` beside the object, for rows kept although Stripe refused or
    did not answer (a declined charge, an unknown outcome)."""

    errors = graphene.List(
        graphene.NonNull(StripeError), required=True, description="What the person can fix; empty on success."
    )

    class Meta:
        abstract = True

    @classmethod
    def __init_subclass_with_meta__(cls, **options: Any) -> None:
        super().__init_subclass_with_meta__(**options)
        # graphene declares these without descriptions; every field and argument carries one here.
        name = re.sub("Payload$", "", cls._meta.name)
        # (Options are frozen once built; the description is the one thing graphene gives no hook for.)
        object.__setattr__(
            cls.Input._meta, "description", f"Input of {to_camel_case(name[0].lower() + name[1:])}."
        )
        cls.Input._meta.fields["client_mutation_id"] = graphene.InputField(
            graphene.String, name="clientMutationId", description=_CLIENT_MUTATION_ID
        )
        cls.Input._meta.fields["idempotency_key"] = graphene.InputField(
            graphene.String, name="idempotencyKey", description=idempotency.KEY_DESCRIPTION
        )
        cls._meta.fields["client_mutation_id"] = graphene.Field(
            graphene.String, name="clientMutationId", description="The clientMutationId of the input."
        )
        cls._meta.arguments["input"] = graphene.Argument(
            cls.Input, required=True, description="The mutation's input object."
        )

    @classmethod
    def mutate_and_get_payload(cls, root: Any, info: Any, **data: Any) -> Any:
        key = data.pop("idempotency_key", None)
        try:
            if key is None or not info.context.user.is_authenticated:
                return cls(**cls.payload_values(info, data))
            problem = idempotency.key_error(key)
            if problem is not None:
                return cls(errors=[problem])
            values = idempotency.run_once(
                idempotency.owner_of(info.context),
                cls.__name__,
                key,
                data,
                lambda: cls.payload_values(info, data),
            )
            return cls(**{"errors": [], **values})
        except GraphQLError:
            raise
        except Exception as err:
            logger.exception("Unexpected error in mutation %s", cls.__name__)
            raise internal_error() from err

    @classmethod
    def payload_values(cls, info: Any, data: dict[str, Any]) -> dict[str, Any]:
        """``perform``'s payload values, with the errors a person can fix as ``errors``."""
        try:
            return {"errors": [], **cls.perform(info, **data)}
        except UserError as err:
            return {"errors": err.errors}
        except AaStripeError as err:
            return {"errors": [error_from_exception(err)]}

    @classmethod
    def perform(cls, info: Any, **data: Any) -> dict[str, Any]:
        raise NotImplementedError


def require_stripe_user(info: Any) -> Any:
    """The signed-in request's Stripe user (see ``stripe_user``); PERMISSION_DENIED when there is none."""
    require_signed_in(info)
    owner = stripe_user(info.context)
    if owner is None or owner.pk is None:
        raise permission_denied("This request has no Stripe user.")
    return owner


def object_from_global_id(
    global_id: str, node_type: type, queryset: Any, field: str, info: Any, *, visible_only: bool = True
) -> Any:
    """The row behind ``global_id`` that ``info``'s user may see, else ``NOT_FOUND`` on ``field``:
    another user's object looks exactly like an unknown one.

    ``visible_only=False`` skips the type's visibility rules (``get_queryset``), for callers whose
    permission to act (e.g. ``change_stripecharge``) was checked already and covers every row of
    ``queryset``."""
    missing = UserError(StripeErrorCode.NOT_FOUND, f"No {node_type._meta.name} with this id.", field)
    try:
        type_name, pk = from_global_id(global_id)
    except Exception:
        type_name, pk = "", ""
    if type_name != node_type._meta.name or not pk:
        raise missing
    if visible_only:
        queryset = node_type.get_queryset(queryset, info)
    try:
        found = queryset.filter(pk=pk).first()
    except (ValueError, TypeError, ValidationError):
        found = None
    if found is None:
        raise missing
    return found


def json_object(value: Any, field: str, *, required: bool = True) -> dict[str, Any] | None:
    """A JSONString input that must hold a JSON object."""
    if value is None:
        if required:
            raise UserError(StripeErrorCode.REQUIRED, "This field is required.", field)
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise UserError(StripeErrorCode.INVALID, "Not valid JSON.", field) from None
    if not isinstance(value, dict):
        raise UserError(StripeErrorCode.INVALID, "Must be a JSON object.", field)
    return value


#: Stripe's limits on metadata (https://docs.stripe.com/metadata).
METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_VALUE_LENGTH = 500


def metadata_object(value: Any, field: str = "metadata", *, required: bool = False) -> dict[str, Any]:
    """Stripe metadata: a flat JSON object of strings (numbers and booleans are sent as text)."""
    metadata = json_object(value, field, required=required) or {}
    if len(metadata) > METADATA_MAX_KEYS:
        raise UserError(StripeErrorCode.INVALID, f"At most {METADATA_MAX_KEYS} metadata keys.", field)
    for key, item in metadata.items():
        # Stripe's limits; a key with brackets cannot even be form-encoded as one key.
        if not key or len(key) > METADATA_MAX_KEY_LENGTH or "[" in key or "]" in key:
            raise UserError(
                StripeErrorCode.INVALID,
                f"Metadata keys are 1 to {METADATA_MAX_KEY_LENGTH} characters without square brackets.",
                field,
            )
        if isinstance(item, dict | list):
            raise UserError(
                StripeErrorCode.INVALID, f"Metadata value {key!r} must be a string, not nested.", field
            )
        if item is not None and len(str(item)) > METADATA_MAX_VALUE_LENGTH:
            raise UserError(
                StripeErrorCode.INVALID,
                f"Metadata value {key!r} is longer than {METADATA_MAX_VALUE_LENGTH} characters.",
                field,
            )
    return metadata


def clean(instance: Model, fields: Iterable[str], renamed: dict[str, str] | None = None) -> None:
    """Run the model's validation of ``fields`` only; problems become payload errors on the inputs
    of the same (camelCase) name, or as ``renamed`` (model field name -> input name) says."""
    fields = set(fields)
    exclude = [field.name for field in instance._meta.fields if field.name not in fields]
    try:
        instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as err:
        raise UserError.from_validation_error(err, renamed or {}) from None


def with_error(name: str, instance: Any, error: AaStripeError, field: str | None = None) -> dict[str, Any]:
    """A payload that returns ``instance`` (a row kept as it is now) together with ``error``."""
    return {name: instance, "errors": [error_from_exception(error, field)]}


def positive(value: int | None, field: str, *, allow_zero: bool = False) -> None:
    """``INVALID`` on ``field`` unless ``value`` is None or above zero (or zero, when allowed)."""
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        limit = "zero or more" if allow_zero else "more than zero"
        raise UserError(StripeErrorCode.INVALID, f"Must be {limit}.", field)
