"""``example/run_demo.py`` (what ``make demo`` runs) as processes: a busy port is refused before
anything is touched, "Demo ready" means that its own server answered, and every way of stopping it
(Ctrl-C to the process group, a signal to make or to run_demo.py alone) leaves no process behind.

Processes are found through /proc (Linux): each test starts the demo in a session of its own and,
once the demo is stopped, checks that no live process is left in that session.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.server
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.demo_helpers import DEMO_PASSWORD, ROOT, RUN_DEMO, START_TIMEOUT, STRIPE_ENV, free_port, port_open

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")

STOP_TIMEOUT = 30.0
READY = re.compile(r"Demo ready in .*fake Stripe at (http://127\.0\.0\.1:\d+)")


# --- Processes, through /proc ---------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    """Fields 3 on of /proc/<pid>/stat (state, ppid, pgrp, session, ...); None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return "?"


def session(sid: int) -> dict[int, str]:
    """The live processes of session ``sid``, with their command lines (a zombie has ended)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and fields[3] == str(sid) and fields[0] != "Z":
                found[int(entry.name)] = _cmdline(int(entry.name))
    return found


def descendants(pid: int) -> dict[int, str]:
    found: dict[int, str] = {}
    pending = [pid]
    while pending:
        for children in Path(f"/proc/{pending.pop()}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                for child in map(int, children.read_text().split()):
                    found[child] = _cmdline(child)
                    pending.append(child)
    return found


def assert_session_ends(sid: int) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT
    while (left := session(sid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"still running {STOP_TIMEOUT:.0f} s after the stop: {left}"


def kill_session(sid: int) -> None:
    """Cleanup after a failed test: SIGKILL to what is left of the processes this test started."""
    for pid in session(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- The demo, started as make demo starts it -----------------------------------------------------
def demo_env() -> dict[str, str]:
    env = {**os.environ, "DEMO_PASSWORD": DEMO_PASSWORD, "PYTHONUNBUFFERED": "1"}
    # Offline, on the port the test chose; and an outer `make test` must not hand its jobserver on.
    for name in (*STRIPE_ENV, "DJANGO_SETTINGS_MODULE", "DEMO_PORT", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(name, None)
    return env


def run_demo(port: int, database: Path) -> list[str]:
    return [*RUN_DEMO, "--port", str(port), "--database", str(database)]


def make_demo(port: int, database: Path) -> list[str]:
    venv = Path(sys.prefix)
    # -o: the Makefile's recipe as it is, but never a pip install into the venv the tests run in.
    return [
        "make",
        "--no-print-directory",
        "-o",
        f"{venv}/.installed-demo",
        "demo",
        f"VENV={venv}",
        f"DEMO_PORT={port}",
        f"DEMO_ARGS=--database {database}",
    ]


class Running:
    """A demo started in a session of its own, its output in ``demo.log``."""

    def __init__(self, argv: list[str], tmp_path: Path) -> None:
        self.log_path = tmp_path / "demo.log"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, env=demo_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.sid = self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, ready: Callable[[], object], what: str) -> object:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            if found := ready():
                return found
            time.sleep(0.02)
        pytest.fail(f"never {what}:\n{self.log()}")

    def wait_until_ready(self) -> str:
        """The fake Stripe's URL, once the demo says "Demo ready"."""
        return self.wait_until(lambda: READY.search(self.log()), "ready").group(1)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[[list[str]], Running]]:
    demos: list[Running] = []

    def start(argv: list[str]) -> Running:
        demos.append(Running(argv, tmp_path))
        return demos[-1]

    yield start
    for demo in demos:
        kill_session(demo.sid)
        if demo.process.poll() is None:
            demo.process.kill()
        demo.process.wait()


# --- A busy port, a database in use, readiness ----------------------------------------------------
class _AnswersEverything(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"Someone else's server"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def squatter(kind: str) -> Iterator[int]:
    """A port taken by another process (here: this one), as the demo finds it."""
    if kind == "http server":
        with http_server(_AnswersEverything) as port:
            yield port
        return
    with socket.socket() as sock:
        sock.bind(("0.0.0.0" if kind == "socket on 0.0.0.0" else "127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def run_to_end(argv: list[str]) -> tuple[subprocess.CompletedProcess, dict[int, str]]:
    """Run it to its end in a session of its own; what it printed, and what it left running."""
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=START_TIMEOUT)
    finally:
        left = session(process.pid)
        kill_session(process.pid)
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(argv, process.returncode, out, err), left


@pytest.mark.parametrize("kind", ["http server", "socket on 127.0.0.1", "socket on 0.0.0.0"])
def test_a_busy_port_is_refused_before_anything_is_touched(kind: str, tmp_path: Path) -> None:
    database = tmp_path / "demo.sqlite3"
    database.write_bytes(b"the data of the demo that runs on that port")
    modified = database.stat().st_mtime_ns
    with squatter(kind) as port:
        result, left = run_to_end(run_demo(port, database))
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "\n" not in message, message
    assert f"port {port}" in message
    suggested = re.search(r"DEMO_PORT=(\d+) make demo", message)
    assert suggested, message
    assert int(suggested.group(1)) != port
    assert result.stdout == ""  # no fake Stripe, no migration, no "Demo ready"
    assert database.read_bytes() == b"the data of the demo that runs on that port"
    assert database.stat().st_mtime_ns == modified
    assert [path.name for path in tmp_path.iterdir()] == ["demo.sqlite3"]
    assert left == {}


def test_the_database_of_a_running_demo_is_never_deleted(tmp_path: Path) -> None:
    # Another demo on another port holds the file (run_demo.py locks <database>.lock while it runs).
    database = tmp_path / "demo.sqlite3"
    database.write_bytes(b"in use")
    with (tmp_path / "demo.sqlite3.lock").open("wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result, left = run_to_end(run_demo(free_port(), database))
    assert result.returncode == 1
    assert f"{database} is in use by another demo" in result.stderr
    assert result.stdout == ""
    assert database.read_bytes() == b"in use"
    assert left == {}


@pytest.fixture(scope="module")
def runner() -> Iterator[ModuleType]:
    """example/run_demo.py imported, for its parts."""
    spec = importlib.util.spec_from_file_location("run_demo", ROOT / "example" / "run_demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_demo"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["run_demo"]


def test_a_second_offline_demo_takes_its_own_database(runner: ModuleType, tmp_path: Path) -> None:
    default, own = tmp_path / "demo-offline.sqlite3", tmp_path / "demo-offline-8001.sqlite3"
    first, first_lock = runner.claim_database(default, fallback=own)
    second, second_lock = runner.claim_database(default, fallback=own)
    try:
        assert (first, second) == (default, own)
        with pytest.raises(runner.DemoError, match="in use by another demo"):
            runner.claim_database(default, fallback=own)
    finally:
        first_lock.close()
        second_lock.close()
    # Free again once the holder's lock file is closed (when its process ends, at the latest).
    again, lock = runner.claim_database(default, fallback=own)
    lock.close()
    assert again == default


@contextlib.contextmanager
def child(code: str) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_ready_only_when_its_own_server_answers(runner: ModuleType) -> None:
    token = "t0ken"

    class Ours(_AnswersEverything):
        def do_GET(self) -> None:
            body = token.encode() if self.path == runner.READY_PATH else b"?"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with child("import time; time.sleep(60)") as alive:
        with http_server(Ours) as port:
            runner.wait_until_ready(alive, port, token, timeout=10)
        # Another server answers on the port while ours still starts: never "ready".
        with (
            http_server(_AnswersEverything) as port,
            pytest.raises(runner.DemoError, match=f"port {port} answers .* not with this run's token"),
        ):
            runner.wait_until_ready(alive, port, token, timeout=1)
    # Ours could not bind (the port was taken after the check): its exit is the answer.
    with child("raise SystemExit(1)") as exited, http_server(_AnswersEverything) as port:
        exited.wait()
        with pytest.raises(runner.DemoError, match=r"exited with code 1.*DEMO_PORT="):
            runner.wait_until_ready(exited, port, token, timeout=10)


# --- Stopping it ----------------------------------------------------------------------------------
def _started_servers(pid: int) -> dict[int, str]:
    servers = descendants(pid)
    commands = " | ".join(servers.values())
    assert "runserver" in commands, servers
    assert "aa_stripe.testing.fakestripe.server" in commands, servers
    return servers


STOPS: dict[str, Callable[[int], None]] = {
    "Ctrl-C (SIGINT to the process group)": lambda pid: os.killpg(pid, signal.SIGINT),
    "kill -INT <make>": lambda pid: os.kill(pid, signal.SIGINT),
    "kill -TERM <make>": lambda pid: os.kill(pid, signal.SIGTERM),
    "kill -KILL <make>": lambda pid: os.kill(pid, signal.SIGKILL),
}


@pytest.mark.skipif(
    shutil.which("make") is None or not (Path(sys.prefix) / "bin" / "python").exists(),
    reason="needs make, and the tests running in a venv (the Makefile's $(VENV))",
)
@pytest.mark.parametrize("stop", list(STOPS))
def test_make_demo_leaves_no_process_behind(
    stop: str, started: Callable[[list[str]], Running], tmp_path: Path
) -> None:
    port = free_port()
    demo = started(make_demo(port, tmp_path / "demo.sqlite3"))
    fake_stripe = demo.wait_until_ready()
    servers = _started_servers(demo.process.pid)
    assert set(servers) <= set(session(demo.sid))
    STOPS[stop](demo.process.pid)
    assert_session_ends(demo.sid)
    demo.process.wait(timeout=STOP_TIMEOUT)
    assert "Demo stopped." in demo.log()
    assert not port_open(f"http://127.0.0.1:{port}")
    assert not port_open(fake_stripe)


@pytest.mark.parametrize("when", ["ready", "migrating"])
def test_sigint_to_run_demo_alone_leaves_no_process_behind(
    when: str, started: Callable[[list[str]], Running], tmp_path: Path
) -> None:
    # As `kill -INT <pid>` of run_demo.py: its children get no signal but its own.
    demo = started(run_demo(free_port(), tmp_path / "demo.sqlite3"))
    if when == "ready":
        demo.wait_until_ready()
        _started_servers(demo.process.pid)
    else:
        migrating = lambda: any(" migrate " in c for c in descendants(demo.process.pid).values())  # noqa: E731
        demo.wait_until(migrating, "migrating")
    os.kill(demo.process.pid, signal.SIGINT)
    assert demo.process.wait(timeout=STOP_TIMEOUT) == 0, demo.log()
    assert "Demo stopped." in demo.log()
    assert_session_ends(demo.sid)
    if when == "migrating":
        assert "Demo ready" not in demo.log()
