"""Products, prices and plans of the fake Stripe: the gaps of localstripe 1.15 the library meets.

Imported by :mod:`aa_stripe.testing.fakestripe.server` (which documents the other shims). Each
patch says which gap it fills; what they do follows Stripe's API reference for ``/v1/prices``,
``/v1/products`` and ``/v1/plans`` (the parameters of stripe-python 16's ``PriceCreateParams``,
``PriceUpdateParams``, ``PriceListParams``), never more than the library and its tests need.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localstripe import resources
from localstripe import server as ls_server
from localstripe.errors import UserError
from localstripe.resources import (
    Event,
    Plan,
    Product,
    StripeObject,
    try_convert_to_bool,
    try_convert_to_int,
)

# Stripe's limits: recurring periods of at most three years ("3 years, 36 months, or 156 weeks",
# stripe-python's PriceCreateParams; days taken as 3 x 365), lookup keys of at most 200 characters
# (Price.lookup_key), amounts of eight digits, twelve in IDR (Stripe's currency docs, as in
# aa_stripe.validators).
_MAX_INTERVAL_COUNTS = {"day": 1095, "week": 156, "month": 36, "year": 3}
_MAX_UNIT_AMOUNTS = {"idr": 999_999_999_999}
_MAX_UNIT_AMOUNT = 99_999_999
_MAX_LOOKUP_KEY = 200


# Shared by the shims of the other modules (intents.py, payment_intents.py, subscriptions.py, invoices.py).
def _refused(message: str, param: str | None = None, code: str | None = None, **more: Any) -> UserError:
    contents = {key: value for key, value in (("param", param), ("code", code)) if value}
    return UserError(400, message, {**contents, **more})


def _unknown_parameter(unknown: dict[str, Any]) -> UserError:
    name = next(iter(unknown))
    return _refused(f"Received unknown parameter: {name}", param=name)


def _refuse_invalid_id(name: str, value: Any) -> None:
    """A filter by id (customer=..., subscription=...): None (no filter) or a non-empty string."""
    if value is not None and (type(value) is not str or not value):
        raise _refused(f"Invalid {name}: {value}", param=name)


def _send(event_type: str, obj: StripeObject, previous_attributes: dict[str, Any] | None = None) -> None:
    # Event() exports the object now, so the event shows it as it is at this moment. Scheduled through
    # the module global, which server.py replaces with its tracked scheduler.
    event = Event(event_type, obj)
    if previous_attributes is not None:
        event.data["previous_attributes"] = previous_attributes
    resources.schedule_webhook(event)


def _created_tests(created: Any) -> list[Callable[[int], bool]]:
    """Stripe's ``created`` list filter: a timestamp, or ``{gt, gte, lt, lte}``."""
    bounds = created if type(created) is dict else {} if created is None else {"eq": created}
    compare = {
        "eq": lambda value, bound: value == bound,
        "gt": lambda value, bound: value > bound,
        "gte": lambda value, bound: value >= bound,
        "lt": lambda value, bound: value < bound,
        "lte": lambda value, bound: value <= bound,
    }
    tests = []
    for name, bound in bounds.items():
        number = try_convert_to_int(bound)
        if type(number) is not int or name not in compare:
            raise _refused("Invalid created filter", param=f"created[{name}]")
        tests.append(lambda value, test=compare[name], number=number: test(value, number))
    return tests


# --- Prices --------------------------------------------------------------------------------------
# localstripe has no Price object at all (no /v1/prices): the library creates prices, reads and
# lists them (refresh_prices, lookups of a creation whose answer was lost), and the tests change
# them "in the dashboard". One-time and recurring per-unit prices only (no tiers, no meters).
class Price(StripeObject):
    object = "price"
    _id_prefix = "price_"

    def __init__(
        self,
        currency: Any = None,
        product: Any = None,
        product_data: Any = None,
        unit_amount: Any = None,
        recurring: Any = None,
        active: Any = True,
        nickname: Any = None,
        lookup_key: Any = None,
        transfer_lookup_key: Any = None,
        metadata: Any = None,
        billing_scheme: Any = "per_unit",
        tax_behavior: Any = "unspecified",
        **unknown: Any,
    ) -> None:
        if unknown:
            raise _unknown_parameter(unknown)
        if type(currency) is not str or not currency:
            raise _refused("Missing required param: currency.", param="currency", code="parameter_missing")
        product_id = _product_for_price(product, product_data)
        amount = try_convert_to_int(unit_amount)
        if billing_scheme != "per_unit":
            raise _refused("The fake supports per_unit prices only.", param="billing_scheme")
        if type(amount) is not int or amount < 0:
            raise _refused(
                "Invalid non-negative integer", param="unit_amount", code="parameter_invalid_integer"
            )
        if amount > _MAX_UNIT_AMOUNTS.get(currency.lower(), _MAX_UNIT_AMOUNT):
            raise _refused("This value must be less than or equal to the maximum.", param="unit_amount")
        recurring = _recurring(recurring)
        active = _boolean(active, "active")
        metadata = _metadata(metadata)
        _check_text(nickname, "nickname")
        holders = _lookup_key_holders(lookup_key, transfer_lookup_key, None)
        if product_id is None:  # product_data: Stripe makes the product with the price
            product_id = Product(type="service", **product_data).id
        # All exceptions must be raised before this point.
        super().__init__()
        for holder in holders:  # transfer_lookup_key: the key moves to this price
            holder.lookup_key = None
        self.active = active
        self.billing_scheme = "per_unit"
        self.currency = currency.lower()
        self.lookup_key = lookup_key or None
        self.metadata = metadata
        self.nickname = nickname
        self.product = product_id
        self.recurring = recurring
        self.tax_behavior = tax_behavior
        self.type = "recurring" if recurring else "one_time"
        self.unit_amount = amount
        self.unit_amount_decimal = str(amount)
        _send("price.created", self)

    @classmethod
    def _api_update(cls, id: str, **data: Any) -> Price:
        obj = cls._api_retrieve(id)
        allowed = {"active", "nickname", "lookup_key", "transfer_lookup_key", "metadata", "tax_behavior"}
        for name in data:
            if name not in allowed:
                raise _refused(f"Received unknown parameter: {name}", param=name)
        active = _boolean(data.get("active", obj.active), "active")
        metadata = _metadata(data.get("metadata"))
        _check_text(data.get("nickname"), "nickname")
        if "lookup_key" in data:
            for holder in _lookup_key_holders(data["lookup_key"], data.get("transfer_lookup_key"), obj.id):
                holder.lookup_key = None
            obj.lookup_key = data["lookup_key"] or None
        obj.active = active
        # Stripe: a key posted empty is unset, and so is all metadata posted as "".
        merged = {} if data.get("metadata") == "" else {**(obj.metadata or {}), **metadata}
        obj.metadata = {key: value for key, value in merged.items() if value != ""}
        if "nickname" in data:
            obj.nickname = data["nickname"] or None
        _send("price.updated", obj)
        return obj

    @classmethod
    def _api_list_all(
        cls,
        url: str,
        active: Any = None,
        product: Any = None,
        currency: Any = None,
        type: Any = None,
        lookup_keys: Any = None,
        created: Any = None,
        limit: Any = None,
        starting_after: Any = None,
        **unknown: Any,
    ) -> Any:
        if unknown:
            raise _unknown_parameter(unknown)
        tests = [lambda obj, test=test: test(obj.created) for test in _created_tests(created)]
        if active is not None:
            wanted = _boolean(active, "active")
            tests.append(lambda obj: obj.active is wanted)
        if product is not None:
            tests.append(lambda obj: obj.product == product)
        if currency is not None:
            tests.append(lambda obj: obj.currency == str(currency).lower())
        if type is not None:
            tests.append(lambda obj: obj.type == type)
        if lookup_keys is not None:
            keys = lookup_keys if isinstance(lookup_keys, list) else [lookup_keys]
            tests.append(lambda obj: obj.lookup_key in keys)
        listed = super()._api_list_all(url, limit=limit, starting_after=starting_after)
        listed._list = [obj for obj in listed._list if all(test(obj) for test in tests)]
        return listed


def _product_for_price(product: Any, product_data: Any) -> str | None:
    if (product is None) == (product_data is None):
        raise _refused(
            "You must specify either `product` or `product_data` when creating a price.",
            param="product",
            code="parameter_missing" if product is None else None,
        )
    if product_data is not None:
        if type(product_data) is not dict or not product_data.get("name"):
            raise _refused("Missing required param: product_data[name].", param="product_data[name]")
        return None
    if type(product) is not str or resources.store.get(f"product:{product}") is None:
        raise _refused(f"No such product: '{product}'", param="product", code="resource_missing")
    return product


def _recurring(recurring: Any) -> dict[str, Any] | None:
    if recurring in (None, ""):
        return None
    if type(recurring) is not dict:
        raise _refused("Invalid object", param="recurring")
    interval = recurring.get("interval")
    if interval not in _MAX_INTERVAL_COUNTS:
        raise _refused(
            "Invalid recurring[interval]: must be one of day, month, week, or year",
            param="recurring[interval]",
        )
    count = try_convert_to_int(recurring.get("interval_count", 1))
    if type(count) is not int or not 1 <= count <= _MAX_INTERVAL_COUNTS[interval]:
        raise _refused(
            "Maximum of three years interval allowed (3 years, 36 months, or 156 weeks).",
            param="recurring[interval_count]",
        )
    usage = recurring.get("usage_type", "licensed")
    if usage != "licensed":
        raise _refused("The fake supports licensed prices only.", param="recurring[usage_type]")
    days = try_convert_to_int(recurring.get("trial_period_days"))
    return {
        "interval": interval,
        "interval_count": count,
        "meter": None,
        "trial_period_days": days,
        "usage_type": usage,
    }


def _boolean(value: Any, param: str) -> bool:
    value = try_convert_to_bool(value)
    if type(value) is not bool:
        raise _refused(f"Invalid boolean: {value}", param=param)
    return value


def _metadata(metadata: Any) -> dict[str, Any]:
    if metadata in (None, ""):
        return {}
    if type(metadata) is not dict:
        raise _refused("Invalid object", param="metadata")
    return dict(metadata)


def _check_text(value: Any, param: str) -> None:
    if value is not None and type(value) is not str:
        raise _refused(f"Invalid string: {value}", param=param)


def _lookup_key_holders(key: Any, transfer: Any, owner: str | None) -> list[Price]:
    """The prices to take ``key`` from. Stripe keeps lookup keys unique across the account's prices:
    a key in use is refused, unless ``transfer_lookup_key`` moves it to this price."""
    if key in (None, ""):
        return []
    if type(key) is not str or len(key) > _MAX_LOOKUP_KEY:
        raise _refused("Invalid lookup_key: at most 200 characters.", param="lookup_key")
    holders = [
        obj
        for name, obj in resources.store.items()
        if name.startswith("price:") and obj.lookup_key == key and obj.id != owner
    ]
    if holders and try_convert_to_bool(transfer) is not True:
        raise _refused(f"A price (`{holders[0].id}`) already uses that lookup key.", param="lookup_key")
    return holders


for _method, _url, _handler in (
    ("POST", "/v1/prices", ls_server.api_create),
    ("GET", "/v1/prices/{id}", ls_server.api_retrieve),
    ("POST", "/v1/prices/{id}", ls_server.api_update),  # no DELETE: Stripe's API cannot delete prices
    ("GET", "/v1/prices", ls_server.api_list_all),
):
    ls_server.app.router.add_route(_method, _url, _handler(Price, _url))


# --- Products ------------------------------------------------------------------------------------
# Stripe refuses an id in use (400 resource_already_exists; localstripe: 409, which clients retry as
# a transient failure) and a product that still has prices ("This product cannot be deleted
# because it has one or more user-created prices"); localstripe sends no product.updated or
# product.deleted event, which Stripe sends.
_product_init = Product.__init__


def _product_init_unique(self: Product, id: Any = None, **kwargs: Any) -> None:
    if type(id) is str and id and resources.store.get(f"product:{id}") is not None:
        raise _refused("Product already exists.", param="id", code="resource_already_exists")
    _product_init(self, id=id, **kwargs)


@classmethod
def _product_update(cls: type[Product], id: str, **data: Any) -> Product:
    if "active" in data:
        data["active"] = _boolean(data["active"], "active")
    obj = super(Product, cls)._api_update(id, **data)
    _send("product.updated", obj)
    return obj


@classmethod
def _product_delete(cls: type[Product], id: str) -> Any:
    obj = cls._api_retrieve(id)
    if any(name.startswith("price:") and price.product == id for name, price in resources.store.items()):
        raise _refused("This product cannot be deleted because it has one or more user-created prices.")
    _send("product.deleted", obj)
    return super(Product, cls)._api_delete(id)


Product.__init__ = _product_init_unique
Product._api_update = _product_update
Product._api_delete = _product_delete


# --- Plans ---------------------------------------------------------------------------------------
# Stripe updates a plan's active, metadata, nickname, product and trial_period_days only (amounts
# and intervals are fixed), takes "true"/"false" for active, and sends plan.updated and
# plan.deleted. localstripe sets any attribute to the text it received ("false" stays a string)
# and sends neither event.
@classmethod
def _plan_update(cls: type[Plan], id: str, **data: Any) -> Plan:
    allowed = {"active", "metadata", "nickname", "product", "trial_period_days"}
    for name in data:
        if name not in allowed:
            raise _refused(f"Received unknown parameter: {name}", param=name)
    if "active" in data:
        data["active"] = _boolean(data["active"], "active")
    if "trial_period_days" in data:
        data["trial_period_days"] = try_convert_to_int(data["trial_period_days"])
    obj = super(Plan, cls)._api_update(id, **data)
    _send("plan.updated", obj)
    return obj


@classmethod
def _plan_delete(cls: type[Plan], id: str) -> Any:
    _send("plan.deleted", cls._api_retrieve(id))
    return super(Plan, cls)._api_delete(id)


Plan._api_update = _plan_update
Plan._api_delete = _plan_delete
