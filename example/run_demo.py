"""``make demo``: the demo host project, served on 127.0.0.1, offline unless you bring Stripe keys.

Offline (default): starts the fake Stripe server (localstripe) on loopback, registers the demo's
webhook URL with a fresh ``whsec_`` secret so the fake delivers real signed events, migrates a new
SQLite file (the fake keeps nothing between runs, so neither does the demo's database), seeds
users, plans and a coupon through the library, and serves the demo on http://127.0.0.1:8000/.

Real Stripe test mode: with ``STRIPE_API_KEY=sk_test_...`` and ``STRIPE_PUBLISHABLE_KEY=pk_test_...``
in the environment (``STRIPE_WEBHOOK_ENDPOINT_SECRET`` too, for webhooks forwarded by
``stripe listen``), nothing fake is started and the database file is kept between runs.

A port in use is refused before anything is started or deleted (it may be a demo already running
there). "Demo ready" is printed only once this run's own server answers. Ctrl-C (or SIGINT or
SIGTERM to this process, or to make) stops everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

HERE = Path(__file__).resolve().parent
MANAGE = [sys.executable, str(HERE / "manage.py")]
READY_TIMEOUT = 60.0
READY_PATH = "/_demo/ready"  # demo_project.views.ready answers the token of its run there
STOP_TIMEOUT = 10.0
POLL = 0.2
# Only loopback URLs are requested: an http_proxy from the environment must not see them.
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# The bits of SIGHUP, SIGINT, SIGQUIT and SIGTERM in the signal masks of /proc/<pid>/status.
FATAL_SIGNALS = sum(1 << (sig - 1) for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM))


class DemoError(Exception):
    """Something the person running the demo has to fix; printed without a traceback."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


# --- The port and the database --------------------------------------------------------------------
def port_in_use(port: int) -> bool:
    """Whether runserver would fail to bind 127.0.0.1:``port``. It binds with SO_REUSEADDR, so the
    closed connections of an earlier run (TIME_WAIT) do not count here either."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def another_port(port: int) -> str:
    """What to type instead: ``DEMO_PORT=<a port free now> make demo``."""
    free = next((p for p in range(port + 1, min(port + 100, 65536)) if not port_in_use(p)), None)
    return f"DEMO_PORT={free or 'PORT'} make demo"


def claim_database(path: Path, fallback: Path | None = None) -> tuple[Path, IO[bytes]]:
    """Lock ``path`` (its ``.lock`` file) for as long as the returned file stays open.

    The offline demo deletes its database when it starts: one started on another port must never
    delete the file of a demo that still runs. That file is swapped for ``fallback`` when given."""
    for candidate in (path, fallback):
        if candidate is None:
            continue
        try:
            lock = open(f"{candidate}.lock", "wb")  # noqa: SIM115 (held until the demo stops)
        except OSError as err:
            raise DemoError(f"Cannot use the database {candidate}: {err.strerror}.") from err
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return candidate, lock
    raise DemoError(f"{path} is in use by another demo that is still running: stop that one first.")


# --- Processes ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends: a KeyboardInterrupt between starting a child
    and recording it would leave a process that nothing stops."""
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            raise KeyboardInterrupt


def _caught_signals(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return int(line.split()[1], 16)
    return None


class ParentWatch:
    """Whether the make that started us is going away, so that we stop too.

    GNU make does not pass SIGINT on to its recipe (Ctrl-C reaches the whole process group
    anyway): after ``kill -INT <make>`` it resets the signal to its default and waits for us
    forever. That reset shows in /proc/<pid>/status. A killed make leaves us running with nobody
    to stop us; the parent changes then. Never fires for another parent, or without /proc."""

    def __init__(self) -> None:
        self.parent = os.getppid()
        try:
            name = Path(f"/proc/{self.parent}/comm").read_text().strip()
        except OSError:
            name = ""
        self.caught = (_caught_signals(self.parent) or 0) & FATAL_SIGNALS if name in ("make", "gmake") else 0

    def gave_up(self) -> bool:
        if not self.caught:
            return False
        if os.getppid() != self.parent:
            return True
        caught = _caught_signals(self.parent)
        return caught is not None and bool(self.caught & ~caught)


class Children:
    """The processes this run started; :meth:`stop` ends them all, however the run ends."""

    def __init__(self, watch: ParentWatch) -> None:
        self.watch = watch
        self.processes: list[subprocess.Popen] = []

    def start(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        with _signals_held():
            process = subprocess.Popen(argv, **kwargs)  # noqa: S603 (our own commands)
            self.processes.append(process)
        return process

    def wait(self, process: subprocess.Popen) -> int:
        """``process.wait()`` that also ends when make gives up on us."""
        if not self.watch.caught:
            return process.wait()
        while True:
            try:
                return process.wait(timeout=POLL)
            except subprocess.TimeoutExpired:
                if self.watch.gave_up():
                    raise KeyboardInterrupt from None

    def manage(self, env: dict[str, str], *args: str) -> None:
        code = self.wait(self.start([*MANAGE, *args], env=env))
        if code:
            raise DemoError(f"manage.py {' '.join(args)} failed (exit {code}); see above.")

    def _hurry(self, signum: int, frame: FrameType | None) -> None:
        for process in self.processes:
            process.kill()  # a no-op for one already reaped

    def stop(self) -> None:
        """SIGTERM to every child (SIGINT may be ignored when started in the background), SIGKILL
        to one still running after STOP_TIMEOUT, or at once on another Ctrl-C."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._hurry)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_fake_stripe(children: Children, port: int) -> str:
    """Start localstripe (through aa_stripe.testing.fakestripe) and return its URL."""
    try:
        import localstripe  # noqa: F401 (dev-only dependency: say so if it is missing)
    except ImportError as err:
        raise DemoError(
            "The offline demo needs the fake Stripe server (localstripe, a dev-only dependency): "
            "run it with `make demo`, which installs it, or `pip install --group demo -e .`."
        ) from err
    proc = children.start(
        [sys.executable, "-m", "aa_stripe.testing.fakestripe.server", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "READY http://127.0.0.1:PORT" once it serves
    if not line.startswith("READY "):
        raise DemoError(f"The fake Stripe server did not start (port {port} taken?): {line!r}")
    return line.split()[1]


def register_webhook(api_base: str, url: str, secret: str) -> None:
    """Tell the fake Stripe where to deliver signed events (localstripe's /_config/webhooks)."""
    body = urllib.parse.urlencode({"url": url, "secret": secret}).encode()
    request = urllib.request.Request(f"{api_base}/_config/webhooks/demo", data=body, method="POST")  # noqa: S310
    with LOOPBACK.open(request, timeout=5):
        pass


def wait_until_ready(
    server: subprocess.Popen,
    port: int,
    token: str,
    timeout: float = READY_TIMEOUT,
    watch: ParentWatch | None = None,
) -> None:
    """Until the server answers ``token`` at READY_PATH: whatever else may answer on the port
    (a server that took it after our check) never counts."""
    url = f"http://127.0.0.1:{port}{READY_PATH}"
    deadline = time.monotonic() + timeout
    other = ""
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise DemoError(
                f"The demo server exited with code {server.returncode}; see above. If port {port} "
                f"was taken meanwhile, pick another: {another_port(port)}"
            )
        try:
            with LOOPBACK.open(url, timeout=2) as response:
                if response.read().decode(errors="replace") == token:
                    return
                other = f"HTTP {response.status}"
        except urllib.error.HTTPError as err:
            err.close()
            other = f"HTTP {err.code}"
        except OSError:
            pass
        if watch is not None and watch.gave_up():
            raise KeyboardInterrupt
        time.sleep(POLL)
    if other:
        raise DemoError(
            f"port {port} answers ({other} at {READY_PATH}) but not with this run's token: another "
            f"process has it? Pick another: {another_port(port)}"
        )
    raise DemoError(f"The demo server did not answer {url} within {timeout:.0f} s.")


# --- The run --------------------------------------------------------------------------------------
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
    env["DEMO_READY_TOKEN"] = secrets.token_hex(16)
    env["DJANGO_SETTINGS_MODULE"] = "demo_project.settings"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    return env, real


def start_offline(args: argparse.Namespace, env: dict[str, str], children: Children) -> IO[bytes]:
    """The fake Stripe, and a fresh database to match it (it forgets everything when it stops).
    Returns the database's lock, held until the demo stops."""
    requested = Path(env["DEMO_DATABASE"])
    fallback = None if args.database else HERE / f"demo-offline-{args.port}.sqlite3"
    database, lock = claim_database(requested, fallback)
    if database != requested:
        print(f"{requested.name} belongs to a demo still running; this one uses {database.name}.", flush=True)
    env["DEMO_DATABASE"] = str(database)
    print("Offline: starting the fake Stripe server (localstripe) on 127.0.0.1.", flush=True)
    env["STRIPE_API_BASE"] = start_fake_stripe(children, args.fake_stripe_port)
    webhooks = f"http://127.0.0.1:{args.port}/aa-stripe/webhooks"
    register_webhook(env["STRIPE_API_BASE"], webhooks, env["STRIPE_WEBHOOK_ENDPOINT_SECRET"])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    return lock


def run(args: argparse.Namespace) -> None:
    # First of all: a busy port may be a demo already running there, whose database the steps
    # below would delete.
    if port_in_use(args.port):
        raise DemoError(
            f"port {args.port} on 127.0.0.1 is in use by another process (a demo already running "
            f"there?); nothing was started or deleted. Pick another: {another_port(args.port)}"
        )
    env, real = configure(args)
    started = time.monotonic()
    base = f"http://127.0.0.1:{args.port}"
    watch = ParentWatch()
    children = Children(watch)
    lock = None
    try:
        if real:
            print(
                "Talking to Stripe TEST MODE with your STRIPE_API_KEY; nothing fake is started.", flush=True
            )
        else:
            lock = start_offline(args, env, children)
        children.manage(env, "migrate", "--noinput", "--verbosity", "0")
        server = children.start(
            [*MANAGE, "runserver", f"127.0.0.1:{args.port}", "--noreload", "--skip-checks"], env=env
        )
        # Serve before seeding, so the events the seeding causes are delivered and parsed.
        wait_until_ready(server, args.port, env["DEMO_READY_TOKEN"], watch=watch)
        children.manage(env, "seed_demo")
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
            lines.append(
                "  Test cards: 4242424242424242 (accepted), 4000002500003155 (asks the bank when saved),\n"
                "  4000002760003184 (asks the bank on every payment), 4000000000000002 (declined)."
            )
        lines.append("Ctrl-C stops the demo.")
        print("\n".join(lines), flush=True)
        if children.wait(server):
            raise DemoError(f"The demo server exited with code {server.returncode}.")
    finally:
        while True:
            try:
                children.stop()
                break
            except KeyboardInterrupt:  # between `finally` and stop() taking over the signals
                continue
        if lock is not None:
            lock.close()


def _port(text: str) -> int:
    if not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=_port, default=int(os.environ.get("DEMO_PORT", "8000")))
    parser.add_argument("--fake-stripe-port", type=int, default=0, help="0 (default): any free port")
    parser.add_argument("--database", help="SQLite file (default: example/demo-offline.sqlite3)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    # A shell starting us in the background ignores SIGINT for us; Ctrl-C or kill -INT must still stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # nohup: keep running
        signal.signal(signal.SIGHUP, _stop)  # the terminal closed: stop the children too
    try:
        run(args)
    except KeyboardInterrupt:
        print("\nDemo stopped.", flush=True)
    except DemoError as err:
        print(f"make demo: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
