"""Stripe's canonical example objects (current API shape), see tests/fixtures/README.md."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "stripe-openapi-fixtures3.json"


@functools.cache
def _resources() -> dict[str, Any]:
    return json.loads(FIXTURES.read_text())["resources"]


def stripe_object(resource: str, **overrides: Any) -> dict[str, Any]:
    """A deep copy of Stripe's example ``resource`` object with ``overrides`` applied."""
    obj = copy.deepcopy(_resources()[resource])
    obj.update(overrides)
    return obj
