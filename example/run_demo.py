"""``make demo``: the demo host project, served on 127.0.0.1, offline unless you bring Stripe keys.

Offline (default): starts the fake Stripe server (localstripe) on loopback, registers the demo's
webhook URL with a fresh ``whsec_`` secret so the fake delivers real signed events, migrates a new
SQLite file (the fake keeps nothing between runs, so neither does the demo's database), seeds
users, plans and a coupon through the library, and serves the demo on http://127.0.0.1:8000/.

Real Stripe test mode: with ``STRIPE_API_KEY=sk_test_...`` and ``STRIPE_PUBLISHABLE_KEY=pk_test_...``
in the environment (``STRIPE_WEBHOOK_ENDPOINT_SECRET`` too, for webhooks forwarded by
``stripe listen``), nothing fake is started and the database file is kept between runs.

Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
MANAGE = [sys.executable, str(HERE / "manage.py")]
READY_TIMEOUT = 60.0


class DemoError(Exception):
    """Something the person running the demo has to fix; printed without a traceback."""


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run([*MANAGE, *args], env=env, check=False)  # noqa: S603
    if result.returncode:
        raise DemoError(f"manage.py {' '.join(args)} failed (exit {result.returncode}); see above.")


def _wait_for_http(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"{what} exited with code {proc.returncode}; see above.")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (our own http://127.0.0.1 URL)
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise DemoError(f"{what} did not answer {url} within {READY_TIMEOUT:.0f} s.")


def start_fake_stripe(port: int) -> tuple[subprocess.Popen, str]:
    """Start localstripe (through aa_stripe.testing.fakestripe) and return it with its URL."""
    try:
        import localstripe  # noqa: F401 (dev-only dependency: say so if it is missing)
    except ImportError as err:
        raise DemoError(
            "The offline demo needs the fake Stripe server (localstripe, a dev-only dependency): "
            "run it with `make demo`, which installs it, or `pip install --group test -e .`."
        ) from err
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "aa_stripe.testing.fakestripe.server", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "READY http://127.0.0.1:PORT" once it serves
    if not line.startswith("READY "):
        proc.kill()
        raise DemoError(f"The fake Stripe server did not start (port {port} taken?): {line!r}")
    return proc, line.split()[1]


def register_webhook(api_base: str, url: str, secret: str) -> None:
    """Tell the fake Stripe where to deliver signed events (localstripe's /_config/webhooks)."""
    body = urllib.parse.urlencode({"url": url, "secret": secret}).encode()
    request = urllib.request.Request(f"{api_base}/_config/webhooks/demo", data=body, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310 (loopback)
        pass


def configure(args: argparse.Namespace) -> tuple[dict[str, str], bool]:
    """The environment of the demo's processes, and whether it talks to real Stripe."""
    env = dict(os.environ)
    real = bool(env.get("STRIPE_API_KEY"))
    if real:
        key = env["STRIPE_API_KEY"]
        if not key.startswith(("sk_test_", "rk_test_")):
            raise DemoError(
                "STRIPE_API_KEY must be a test-mode key (sk_test_...): the demo never uses live keys."
            )
        if not env.get("STRIPE_PUBLISHABLE_KEY", "").startswith("pk_test_"):
            raise DemoError(
                "With STRIPE_API_KEY set, also set STRIPE_PUBLISHABLE_KEY=pk_test_... for stripe.js."
            )
        env.pop("STRIPE_API_BASE", None)
    else:
        env.update(
            STRIPE_API_KEY="sk_test_demo_offline",
            STRIPE_PUBLISHABLE_KEY="pk_test_demo_offline",
            STRIPE_WEBHOOK_ENDPOINT_SECRET="whsec_" + secrets.token_hex(16),
        )
    default_db = HERE / ("demo-stripe-test.sqlite3" if real else "demo-offline.sqlite3")
    env["DEMO_DATABASE"] = str(Path(args.database).resolve() if args.database else default_db)
    env["DJANGO_SETTINGS_MODULE"] = "demo_project.settings"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    return env, real


def run(args: argparse.Namespace) -> None:
    env, real = configure(args)
    started = time.monotonic()
    base = f"http://127.0.0.1:{args.port}"
    children: list[subprocess.Popen] = []
    try:
        if real:
            print(
                "Talking to Stripe TEST MODE with your STRIPE_API_KEY; nothing fake is started.", flush=True
            )
        else:
            print("Offline: starting the fake Stripe server (localstripe) on 127.0.0.1.", flush=True)
            fake, api_base = start_fake_stripe(args.fake_stripe_port)
            children.append(fake)
            env["STRIPE_API_BASE"] = api_base
            register_webhook(api_base, f"{base}/aa-stripe/webhooks", env["STRIPE_WEBHOOK_ENDPOINT_SECRET"])
            # The fake forgets everything when it stops: start the database afresh to match it.
            Path(env["DEMO_DATABASE"]).unlink(missing_ok=True)
            for suffix in ("-wal", "-shm"):
                Path(env["DEMO_DATABASE"] + suffix).unlink(missing_ok=True)
        _manage(env, "migrate", "--noinput", "--verbosity", "0")
        server = subprocess.Popen(  # noqa: S603
            [*MANAGE, "runserver", f"127.0.0.1:{args.port}", "--noreload", "--skip-checks"], env=env
        )
        children.append(server)
        # Serve before seeding, so the events the seeding causes are delivered and parsed.
        _wait_for_http(f"{base}/", server, "The demo server")
        _manage(env, "seed_demo")
        where = "Stripe test mode" if real else f"offline, fake Stripe at {env['STRIPE_API_BASE']}"
        lines = [
            "",
            f"Demo ready in {time.monotonic() - started:.1f} s ({where}):",
            f"  demo page  {base}/          (sign in as demo)",
            f"  GraphiQL   {base}/graphql/",
            f"  admin      {base}/admin/    (sign in as admin)",
            f"  webhooks   {base}/aa-stripe/webhooks",
        ]
        if real:
            lines.append(
                "  Stripe cannot reach 127.0.0.1: forward events with "
                f"`stripe listen --forward-to {base}/aa-stripe/webhooks` and set "
                "STRIPE_WEBHOOK_ENDPOINT_SECRET to the secret it prints."
            )
        else:
            lines.append("  Test cards: 4242424242424242 (accepted), 4000000000000002 (declined).")
        lines.append("Ctrl-C stops the demo.")
        print("\n".join(lines), flush=True)
        server.wait()
        if server.returncode:
            raise DemoError(f"The demo server exited with code {server.returncode}.")
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()  # SIGTERM: SIGINT may be ignored when started in the background
        for child in reversed(children):
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8000")))
    parser.add_argument("--fake-stripe-port", type=int, default=0, help="0 (default): any free port")
    parser.add_argument("--database", help="SQLite file (default: example/demo-offline.sqlite3)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # A shell starting us in the background ignores SIGINT for us; Ctrl-C or kill -INT must still stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run(args)
    except KeyboardInterrupt:
        print("\nDemo stopped.", flush=True)
    except DemoError as err:
        print(f"\nmake demo: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
