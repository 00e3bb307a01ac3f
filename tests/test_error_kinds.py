"""Each exception says what kind of failure it is (``AaStripeError.kind``, domain words); the GraphQL
layer alone turns kinds into ``StripeErrorCode``s, and the domain package never imports it."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

from aa_stripe import exceptions
from aa_stripe.exceptions import FailureKind
from aa_stripe_graphql.errors import _CODE_OF_KIND, StripeErrorCode, error_code_for

DOMAIN_PACKAGE = Path(exceptions.__file__).resolve().parent


def all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *all_subclasses(sub)]
    return found


LIBRARY_EXCEPTIONS = [
    cls for cls in all_subclasses(exceptions.AaStripeError) if cls.__module__ == exceptions.__name__
]


@pytest.mark.parametrize("cls", [exceptions.AaStripeError, *LIBRARY_EXCEPTIONS], ids=lambda cls: cls.__name__)
def test_every_exception_has_a_known_kind(cls):
    assert cls().kind in get_args(FailureKind)


def test_every_kind_has_a_graphql_code():
    assert set(_CODE_OF_KIND) == set(get_args(FailureKind))


class HostError(exceptions.AaStripeError):
    kind = "host_specific"  # type: ignore[assignment]  # a kind this library does not know


class HostCardError(exceptions.StripeCardError):
    pass


# What the GraphQL API answered before kinds existed; clients rely on it.
@pytest.mark.parametrize(
    ("error", "code"),
    [
        (exceptions.AaStripeError(), "INVALID"),
        (exceptions.StripeMethodNotAllowed(), "NOT_ALLOWED"),
        (exceptions.StripeAlreadyCanceled(), "NOT_ALLOWED"),
        (exceptions.StripeNoActiveCustomer(), "NO_ACTIVE_CUSTOMER"),
        (exceptions.StripeCouponAlreadyExists(), "ALREADY_EXISTS"),
        (exceptions.StripeWebhookParseError(), "INVALID"),
        (exceptions.StripeWebhookRejected(), "INVALID"),
        (exceptions.StripeInvalidInput(field="amount", code="max_value"), "INVALID"),
        (exceptions.StripeCardError(code="card_declined", decline_code="generic_decline"), "CARD_DECLINED"),
        (exceptions.StripeInvalidRequestError(code="resource_missing"), "NOT_FOUND"),
        (exceptions.StripeInvalidRequestError(code="parameter_invalid_integer"), "INVALID"),
        (exceptions.StripeInvalidRequestError(), "INVALID"),
        (exceptions.StripeAPIError(), "STRIPE_API_ERROR"),
        (exceptions.StripeInternalError(), "STRIPE_API_ERROR"),
        (exceptions.StripeAuthenticationError(), "STRIPE_API_ERROR"),
        (exceptions.StripeIdempotencyError(), "STRIPE_API_ERROR"),
        (HostError(), "INVALID"),
        (HostCardError(), "CARD_DECLINED"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value,
)
def test_graphql_code_of_each_exception(error, code):
    assert error_code_for(error) is getattr(StripeErrorCode, code)


def test_a_missing_object_is_not_found_whatever_the_message():
    missing = exceptions.StripeInvalidRequestError("No such coupon: 'X'", code="resource_missing")
    assert missing.kind == "not_found"
    missing.code = "parameter_missing"
    assert missing.kind == "invalid"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_domain_package_never_imports_the_graphql_layer():
    offenders = {
        str(path.relative_to(DOMAIN_PACKAGE.parent)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] == "aa_stripe_graphql"
        )
        for path in DOMAIN_PACKAGE.rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}
