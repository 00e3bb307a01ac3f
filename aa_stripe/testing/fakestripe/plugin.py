"""pytest plugin (``-p aa_stripe.testing.fakestripe.plugin``): localstripe, a FaultProxy, a fixture.

Fixtures:

* ``localstripe_server`` (session): base URL of ``python -m aa_stripe.testing.fakestripe.server``;
* ``fault_proxy`` (session): a started :class:`FaultProxy` in front of it;
* ``fake_stripe`` (function): wipes the fake, resets the proxy, points ``settings.STRIPE_API_BASE`` at
  the proxy and returns a :class:`FakeStripe`.

Deliberately free of aa_stripe and stripe imports: it talks plain HTTP with ``requests``.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from aa_stripe.testing.fakestripe.proxy import FaultProxy

API_KEY = "sk_test_aa_stripe_tests"
READY_TIMEOUT = 15.0
HTTP_TIMEOUT = 10.0


def _start_server(log_path: Path) -> tuple[subprocess.Popen, str, Any]:
    # Output goes to a file, not a pipe: nobody drains a pipe during the session, and a full pipe
    # (tracebacks from a 500, say) would block the server. --port 0 lets the kernel pick the port,
    # which the READY line reports, so there is no race between choosing a port and binding it.
    log = open(log_path, "ab")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "aa_stripe.testing.fakestripe.server", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return proc, line.split(" ", 1)[1].strip(), log
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    exited = proc.poll()
    _stop_server(proc, log)
    output = log_path.read_text(errors="replace")
    what = f"exited with code {exited}" if exited is not None else f"not ready after {READY_TIMEOUT:.0f}s"
    raise RuntimeError(f"localstripe {what}; its output ({log_path}):\n{output}")


def _stop_server(proc: subprocess.Popen, log: Any) -> None:
    try:
        if proc.poll() is None:
            proc.terminate()  # aiohttp's run_app shuts down cleanly on SIGTERM
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        log.close()


@pytest.fixture(scope="session")
def localstripe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT``) of a localstripe process serving this test session."""
    proc, url, log = _start_server(tmp_path_factory.mktemp("localstripe") / "server.log")
    try:
        yield url
    finally:
        _stop_server(proc, log)


@pytest.fixture(scope="session")
def fault_proxy(localstripe_server: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(localstripe_server).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@dataclass
class FakeStripe:
    url: str  # the proxy: what the code under test talks to
    direct_url: str  # localstripe itself: for setup and for looking behind the proxy's back
    proxy: FaultProxy
    api_key: str = API_KEY
    _webhooks: list[str] = field(default_factory=list, repr=False)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def register_webhook(self, id: str, url: str, secret: str, events: list[str] | None = None) -> None:
        """Have localstripe POST signed events to ``url`` (all event types when ``events`` is None).

        localstripe waits about a second before each delivery; undone at the end of the test."""
        data: dict[str, Any] = {"url": url, "secret": secret}
        if events is not None:
            data["events[]"] = events
        response = requests.post(f"{self.direct_url}/_config/webhooks/{id}", data=data, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        if id not in self._webhooks:
            self._webhooks.append(id)

    def _unregister_webhooks(self) -> None:
        # localstripe cannot forget a webhook; an empty event list makes it skip every event. That
        # needs JSON: form encoding cannot express an empty list (localstripe reads JSON bodies too).
        for id in self._webhooks:
            requests.post(
                f"{self.direct_url}/_config/webhooks/{id}",
                json={"url": "http://127.0.0.1:9/", "secret": "unregistered", "events": []},
                timeout=HTTP_TIMEOUT,
            ).raise_for_status()
        self._webhooks.clear()

    def card_token(self, number: str = "4242424242424242") -> dict[str, Any]:
        """Create a card token at the fake (directly, so it is not among the proxy's recorded calls).

        4000000000000002 is declined when attached; 4000000000000341 attaches, then declines charges."""
        response = requests.post(
            f"{self.direct_url}/v1/tokens",
            data={
                "card[number]": number,
                "card[exp_month]": "12",
                "card[exp_year]": str(datetime.date.today().year + 1),
                "card[cvc]": "123",
            },
            headers=self._auth(),
            timeout=HTTP_TIMEOUT,
        )
        response.raise_for_status()
        return response.json()

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """GET ``path`` straight from localstripe (bypassing the proxy), e.g. ``get("/v1/charges")``."""
        response = requests.get(
            f"{self.direct_url}{path}", params=params, headers=self._auth(), timeout=HTTP_TIMEOUT
        )
        response.raise_for_status()
        return response.json()

    def wipe(self) -> None:
        requests.delete(f"{self.direct_url}/_config/data", timeout=HTTP_TIMEOUT).raise_for_status()


@pytest.fixture
def fake_stripe(localstripe_server: str, fault_proxy: FaultProxy, settings: Any) -> Iterator[FakeStripe]:
    """An empty fake Stripe behind the fault proxy, with Django settings pointing at it."""
    fake = FakeStripe(url=fault_proxy.url, direct_url=localstripe_server, proxy=fault_proxy)
    fake.wipe()
    fault_proxy.reset()
    settings.STRIPE_API_BASE = fault_proxy.url
    settings.STRIPE_API_KEY = API_KEY
    try:
        yield fake
    finally:
        # reset() also wakes requests still sleeping in a "delay" fault so they die here, not later.
        fault_proxy.reset()
        fake._unregister_webhooks()
