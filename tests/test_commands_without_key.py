"""Every command of aa_stripe without STRIPE_API_KEY: one line naming the setting, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError
from django.test import override_settings

from aa_stripe.management.base import MISSING_API_KEY

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[1]
#: Commands that only read or write this database, with the arguments they require.
LOCAL_ONLY = {
    "prune_stripe_webhooks": ["--older-than", "90"],
    "prune_stripe_operations": ["--older-than", "90"],
}
COMMANDS = sorted(name for name, app in get_commands().items() if app == "aa_stripe")


def test_the_list_of_commands_is_complete():
    assert len(COMMANDS) >= 8 and set(LOCAL_ONLY) <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
@override_settings(STRIPE_API_KEY="")
def test_a_command_that_needs_stripe_names_the_missing_key(fake_stripe, name):
    out = StringIO()
    if name in LOCAL_ONLY:
        call_command(name, *LOCAL_ONLY[name], stdout=out, stderr=out)
        assert "STRIPE_API_KEY" not in out.getvalue()
        return
    with pytest.raises(CommandError) as excinfo:
        call_command(name, stdout=out, stderr=out)
    assert str(excinfo.value) == MISSING_API_KEY
    assert "STRIPE_API_KEY" in MISSING_API_KEY
    assert fake_stripe.proxy.calls() == []  # nothing was attempted


def test_from_the_shell_it_is_one_line_and_exit_code_1(tmp_path):
    (tmp_path / "no_key_settings.py").write_text("from tests.settings import *\nSTRIPE_API_KEY = ''\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    env["DJANGO_SETTINGS_MODULE"] = "no_key_settings"
    result = subprocess.run(
        [sys.executable, "-m", "django", "refresh_coupons"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"CommandError: {MISSING_API_KEY}"
    assert "Traceback" not in result.stderr + result.stdout


@override_settings(STRIPE_API_KEY="")
def test_options_that_only_read_the_database_need_no_key(fake_stripe):
    out = StringIO()
    call_command("charge_stripe", "--dry-run", stdout=out)
    call_command("check_pending_webhooks", "--unhandled", stdout=out)
    assert "0 would be charged" in out.getvalue() and "STRIPE_API_KEY" not in out.getvalue()
    assert fake_stripe.proxy.calls() == []
