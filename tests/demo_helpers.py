"""Start and stop the demo (``example/run_demo.py``) as ``make demo`` does, for the demo's tests and
the GraphQL fuzz test: its own process group, its own fake Stripe, a throwaway SQLite file."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
DEMO_PASSWORD = "demo-test-password"  # handed to seed_demo through DEMO_PASSWORD
START_TIMEOUT = 120.0
RUN_DEMO = [sys.executable, "example/run_demo.py"]
STRIPE_ENV = ("STRIPE_API_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_ENDPOINT_SECRET", "STRIPE_API_BASE")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@dataclass
class Demo:
    url: str
    fake_stripe_url: str
    log_path: Path
    process: subprocess.Popen

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def start_demo(tmp_path: Path) -> Demo:
    """Start ``example/run_demo.py`` offline on a free port and wait for "Demo ready"."""
    env = {**os.environ, "DEMO_PASSWORD": DEMO_PASSWORD, "PYTHONUNBUFFERED": "1"}
    # Offline mode, whatever the environment of the test run holds.
    for name in (*STRIPE_ENV, "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    port = free_port()
    log_path = tmp_path / "demo.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*RUN_DEMO, "--port", str(port), "--database", str(tmp_path / "demo.sqlite3")],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGINT reaches all of it, like Ctrl-C
        )
    while time.monotonic() - started < START_TIMEOUT:
        text = log_path.read_text(errors="replace")
        match = re.search(r"Demo ready in .*fake Stripe at (http://127\.0\.0\.1:\d+)", text)
        if match:
            return Demo(f"http://127.0.0.1:{port}", match.group(1), log_path, process)
        if process.poll() is not None:
            break
        time.sleep(0.2)
    stop_demo(process)
    pytest.fail(f"the demo did not get ready:\n{log_path.read_text(errors='replace')}")


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(process.pid, signum)


def stop_demo(process: subprocess.Popen) -> int:
    """SIGINT to the demo's process group, as Ctrl-C; SIGKILL to whatever is left after 30 s.

    The group is signalled even when run_demo.py itself has exited, so that no server it started
    outlives a failed test."""
    if process.poll() is None:
        _signal_group(process, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
    code = process.returncode
    _signal_group(process, signal.SIGKILL)  # leftovers of a run_demo.py that died early
    return code
