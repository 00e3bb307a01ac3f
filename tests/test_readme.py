"""Runs README.md's ```python examples, in order, in one namespace, against the fake Stripe.

Blocks fenced as ```python are run; configuration snippets are fenced as ```py and are not.
The namespace starts with ``user`` (a user of the project), ``token`` (what stripe.js
returned for the test card 4242 4242 4242 4242) and ``client`` (Django's test client).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aa_stripe.signals import webhook_pre_parse

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_readme_has_examples():
    assert len(BLOCKS) >= 6


@pytest.fixture
def restore_receivers():
    """The examples connect signal receivers; leave no receiver behind for later tests."""
    before = list(webhook_pre_parse.receivers)
    yield
    webhook_pre_parse.receivers[:] = before
    webhook_pre_parse.sender_receivers_cache.clear()


@pytest.mark.django_db
def test_readme_examples_run_against_the_fake_stripe(fake_stripe, user, client, capsys, restore_receivers):
    namespace = {"user": user, "token": fake_stripe.card_token(), "client": client}
    for number, block in enumerate(BLOCKS, start=1):
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"README python block {number} failed:\n{block}") from err
    assert capsys.readouterr().out.strip().endswith("True")  # the coupon example's print
