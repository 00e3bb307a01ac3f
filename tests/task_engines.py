"""Real task engines for tests and benchmarks: a Redis server, and worker processes of RQ
(``django_tasks_rq.RQBackend``) or of the database backend (``django_tasks_db.DatabaseBackend``) that
run :mod:`aa_stripe.tasks` against a shared PostgreSQL database.

Typical use (a test with ``transactional_db``, or a benchmark that made its own database)::

    with ensure_redis() as redis_url:                      # only for "rq"
        settings.TASKS = tasks_setting("rq")               # this process enqueues there
        settings.RQ_QUEUES = rq_queues(redis_url)
        env = subprocess_env(database_url, engine="rq", redis_url=redis_url, api_base=fake.url)
        workers = start_workers("rq", 2, env, log_dir)
        try:
            ...                                            # enqueue; wait_until(lambda: drained("rq"))
        finally:
            stop_workers(workers)

The workers are ``python -m django rqworker|db_worker --settings=tests.subprocess_settings``; their
output goes to files (``WorkerProcess.log()``), never to pipes nobody drains. The engine functions
(:func:`engine_counts`, :func:`finished_jobs`, :func:`running_jobs`) read the engine from this process,
so its settings must name the same Redis (``RQ_QUEUES``) or database as the workers'.

Importing this module needs neither Django settings nor Redis: ``tests.subprocess_settings`` imports
:func:`tasks_setting` from it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("rq", "db")
#: The queue every task of :mod:`aa_stripe.tasks` goes to (Django's default queue name).
QUEUE = "default"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
SUBPROCESS_SETTINGS = "tests.subprocess_settings"
_BACKENDS = {"rq": "django_tasks_rq.RQBackend", "db": "django_tasks_db.DatabaseBackend"}
# A line each engine's worker logs (verbosity 1) once it waits for tasks.
_READY_LINES = {"rq": "Listening on", "db": "Starting worker"}


class EngineUnavailable(RuntimeError):
    """An engine cannot run on this machine (no Redis answers and no ``redis-server`` binary, ...)."""


def _check(engine: str) -> None:
    if engine not in _BACKENDS:
        raise ValueError(f"unknown task engine {engine!r}; expected one of {', '.join(ENGINES)}")


# --- settings and environment ---------------------------------------------------------------------


def tasks_setting(engine: str) -> dict[str, Any]:
    """``TASKS`` with ``engine`` (``"rq"`` or ``"db"``) as the default backend, on :data:`QUEUE`."""
    _check(engine)
    return {"default": {"BACKEND": _BACKENDS[engine], "QUEUES": [QUEUE]}}


def rq_queues(redis_url: str) -> dict[str, Any]:
    """``RQ_QUEUES`` putting :data:`QUEUE` on ``redis_url`` (django-rq reads it at every call)."""
    return {QUEUE: {"URL": redis_url}}


def subprocess_env(
    database_url: str,
    *,
    engine: str | None = None,
    redis_url: str | None = None,
    api_base: str | None = None,
    deferred: bool | None = None,
    charge_api: str | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a ``--settings=tests.subprocess_settings`` process (a worker, a command).

    ``base`` (default: this process's environment) without any ``AA_STRIPE_TEST_*`` variable, then:
    ``database_url`` (e.g. ``tests.processes.shared_database_url(...)``), ``engine`` (``TASKS``),
    ``redis_url`` (``RQ_QUEUES``), ``api_base`` (the fake Stripe's URL; without it Stripe is
    unreachable), ``deferred`` (``STRIPE_WEBHOOK_DEFERRED_PARSING``) and ``charge_api``
    (``STRIPE_CHARGE_API``); what is None is left to ``tests.settings``."""
    env = dict(os.environ if base is None else base)
    for key in [key for key in env if key.startswith("AA_STRIPE_TEST_")]:
        del env[key]
    env["AA_STRIPE_TEST_DATABASE_URL"] = database_url
    if engine is not None:
        _check(engine)
        env["AA_STRIPE_TEST_TASKS"] = engine
    optional = {
        "AA_STRIPE_TEST_REDIS_URL": redis_url,
        "AA_STRIPE_TEST_API_BASE": api_base,
        "AA_STRIPE_TEST_CHARGE_API": charge_api,
        "AA_STRIPE_TEST_DEFERRED": None if deferred is None else str(int(deferred)),
    }
    env.update({key: value for key, value in optional.items() if value is not None})
    return env


# --- Redis ----------------------------------------------------------------------------------------


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)


def redis_answers(url: str) -> bool:
    """Whether a Redis at ``url`` answers PING (within about a second)."""
    import redis

    client = _redis(url)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def flush_redis(url: str) -> None:
    """Empty ``url``'s database (FLUSHDB: the other databases of that server are left alone)."""
    client = _redis(url)
    try:
        client.flushdb()
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _redis_server(database: str, timeout: float = 15.0) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise EngineUnavailable(
            "no Redis answers and redis-server is not installed (apt-get install redis-server)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="aa_stripe_redis_"))
    try:
        for _attempt in range(5):  # the free port may be taken again before redis-server binds it
            port = _free_port()
            url = f"redis://127.0.0.1:{port}/{database}"
            log = workdir / "redis.log"
            proc = subprocess.Popen(
                [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                 "--dir", str(workdir), "--logfile", str(log)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + timeout
                while proc.poll() is None and not redis_answers(url):
                    if time.monotonic() > deadline:
                        raise EngineUnavailable(f"redis-server not answering after {timeout:.0f}s")
                    time.sleep(0.05)
                if proc.poll() is None:
                    yield url
                    return
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        text = log.read_text(errors="replace") if log.exists() else ""
        raise EngineUnavailable(f"redis-server would not start: {text[-1000:]}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def ensure_redis(url: str | None = None) -> Iterator[str]:
    """A Redis to use, as a URL with a database number (``redis://host:port/15``).

    ``url`` (default: ``AA_STRIPE_TEST_REDIS_URL``, else :data:`DEFAULT_REDIS_URL`) when a Redis
    answers there; otherwise a ``redis-server`` started here on a free port of 127.0.0.1, without
    persistence, with the same database number, and stopped on the way out. The database is emptied
    (FLUSHDB) before and after, so two runs at once (a benchmark beside the tests, parallel CI jobs
    on one Redis) must each pass a database of their own. Raises :class:`EngineUnavailable` when no
    Redis answers and ``redis-server`` is not installed."""
    url = url or os.environ.get("AA_STRIPE_TEST_REDIS_URL") or DEFAULT_REDIS_URL
    database = urlsplit(url).path.strip("/") or "0"

    with nullcontext(url) if redis_answers(url) else _redis_server(database) as answering:
        flush_redis(answering)
        try:
            yield answering
        finally:
            flush_redis(answering)


# --- worker processes -----------------------------------------------------------------------------

#: RQ's worker class for :func:`worker_command` (see :func:`_prompt_simple_worker`).
RQ_WORKER_CLASS = "tests.task_engines.PromptSimpleWorker"


def _prompt_simple_worker() -> type:
    """RQ's ``SimpleWorker`` (each job run in the worker process, no fork), whose warm shutdown
    (SIGTERM) is prompt.

    RQ 3.0 listens for its commands on a pubsub thread that waits up to 60 s per message; on
    shutdown it calls the thread's ``stop()``, which with redis-py 8 joins the thread, so a worker
    asked to stop may take up to 60 s to exit (seen with rq 3.0.0 and redis 8.2.0, about one stop in
    two after a busy run). This class starts that thread waiting 0.5 s per message instead; nothing
    else differs."""
    from rq.worker import SimpleWorker

    class PromptSimpleWorker(SimpleWorker):
        def subscribe(self) -> None:
            self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
            self.pubsub = self.connection.pubsub()
            self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
            self.pubsub_thread = self.pubsub.run_in_thread(
                sleep_time=0.5, daemon=True, exception_handler=self._pubsub_exception_handler
            )

    PromptSimpleWorker.__module__ = __name__
    return PromptSimpleWorker


def __getattr__(name: str) -> Any:
    # Built on first use (``rqworker --worker-class tests.task_engines.PromptSimpleWorker``), so that
    # importing this module does not import RQ.
    if name == "PromptSimpleWorker":
        worker_class = _prompt_simple_worker()
        globals()[name] = worker_class
        return worker_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def worker_command(
    engine: str, name: str, *, python: str = sys.executable, settings: str = SUBPROCESS_SETTINGS
) -> list[str]:
    """The command line of one worker of ``engine`` called ``name`` (unique among the workers).

    RQ: ``rqworker`` with django-tasks-rq's job class and RQ's ``SimpleWorker`` (as
    :data:`RQ_WORKER_CLASS`), which runs each job in the worker process itself (no fork per job: a
    SIGKILL kills the job with it). The database backend: ``db_worker`` polling every 50 ms, without
    its random start-up delay or autoreload."""
    _check(engine)
    if engine == "rq":
        args = ["rqworker", QUEUE, "--job-class", "django_tasks_rq.Job",
                "--worker-class", RQ_WORKER_CLASS, "--name", name]  # fmt: skip
    else:
        args = ["db_worker", "--queue-name", QUEUE, "--interval", "0.05", "--no-startup-delay",
                "--no-reload", "--worker-id", name]  # fmt: skip
    return [python, "-m", "django", *args, "--verbosity", "1", f"--settings={settings}"]


@dataclass
class WorkerProcess:
    """A worker started by :func:`start_workers`: its ``name`` is the engine's worker name (RQ's
    ``--name``, the database backend's ``--worker-id``), its output is in ``log_path``."""

    engine: str
    name: str
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """Everything the worker printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> int:
        """SIGKILL (no clean-up of any kind, as an OOM kill); returns once it is gone."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
        return self.process.wait(timeout=30)


def _named(env: Mapping[str, str], name: str) -> dict[str, str]:
    """``env`` whose database URL, when it names an ``application_name``, names the worker instead:
    its connections show in ``pg_stat_activity`` as that worker's."""
    url = env.get("AA_STRIPE_TEST_DATABASE_URL", "")
    named = re.sub(r"application_name=[^&]*", f"application_name={name}", url)
    return {**env, "AA_STRIPE_TEST_DATABASE_URL": named}


def start_workers(
    engine: str,
    count: int,
    env: Mapping[str, str],
    log_dir: Path,
    *,
    prefix: str = "worker",
    ready_timeout: float = 60.0,
    python: str = sys.executable,
) -> list[WorkerProcess]:
    """Start ``count`` workers of ``engine`` (named ``{prefix}-{engine}-{n}``) with ``env`` (see
    :func:`subprocess_env`) and wait until each one waits for tasks. Raises RuntimeError, with the
    logs, when one exits or is not ready in time (the others are stopped then)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    workers: list[WorkerProcess] = []
    try:
        for n in range(count):
            name = f"{prefix}-{engine}-{n}"
            log_path = log_dir / f"{name}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    worker_command(engine, name, python=python),
                    cwd=ROOT,
                    # A worker that will not stop is sent SIGABRT: its threads' stacks go to its log.
                    env={**_named(env, name), "PYTHONFAULTHANDLER": "1"},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            workers.append(WorkerProcess(engine, name, proc, log_path))
        deadline = time.monotonic() + ready_timeout
        while not all(_READY_LINES[engine] in worker.log() for worker in workers):
            if any(not worker.alive() for worker in workers) or time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {w.name} (exit {w.process.poll()}):\n{w.log()[-3000:]}" for w in workers
                )
                raise RuntimeError(f"the {engine} workers did not all start:\n{logs}")
            time.sleep(0.05)
    except BaseException:
        stop_workers(workers, timeout=5)
        raise
    return workers


def stop_workers(workers: list[WorkerProcess], timeout: float = 30.0) -> list[int]:
    """SIGTERM each worker still running (both engines finish the task at hand, then exit 0); those
    still running after ``timeout`` get SIGABRT (their stacks go to their logs), then SIGKILL.
    Returns the exit codes (-6 or -9 for a worker that would not stop)."""
    for worker in workers:
        if worker.alive():
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for worker in workers:
        try:
            worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.send_signal(signal.SIGABRT)
            try:
                worker.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                worker.kill()
    return [worker.process.returncode for worker in workers]


# --- what the engine holds (read from this process) ----------------------------------------------


def _rq_queue() -> Any:
    import django_rq
    from django_tasks_rq import Job

    return django_rq.get_queue(QUEUE, job_class=Job)


def engine_counts(engine: str) -> Counter[str]:
    """How many tasks the engine holds, by state: ``queued``, ``running``, ``successful``, ``failed``.

    RQ: the queue and its started/finished/failed registries (a job whose SimpleWorker was killed
    stays ``running`` until its timeout has passed; RQ then fails it, and never runs it again). The
    database backend: ``DBTaskResult`` rows by status (a killed worker's row stays RUNNING)."""
    _check(engine)
    if engine == "rq":
        queue = _rq_queue()
        try:
            counts = {
                "queued": queue.count,
                "running": queue.started_job_registry.get_job_count(cleanup=False),
                "successful": queue.finished_job_registry.get_job_count(cleanup=False),
                "failed": queue.failed_job_registry.get_job_count(cleanup=False),
            }
        finally:
            queue.connection.close()
        return Counter({state: count for state, count in counts.items() if count})
    from django_tasks_db.models import DBTaskResult

    names = {"READY": "queued", "RUNNING": "running", "SUCCESSFUL": "successful", "FAILED": "failed"}
    rows = Counter(DBTaskResult.objects.values_list("status", flat=True))
    return Counter({names.get(str(status), str(status).lower()): count for status, count in rows.items()})


def drained(engine: str) -> bool:
    """Whether nothing is queued (a task a killed worker left ``running`` does not count)."""
    return engine_counts(engine)["queued"] == 0


@dataclass(frozen=True)
class Job:
    """A task as the engine has it: its id, the worker that ran (or runs) it, its arguments and,
    once finished, its return value."""

    id: str
    worker: str
    args: tuple[Any, ...]
    return_value: Any = None


def finished_jobs(engine: str) -> list[Job]:
    """The engine's successful tasks, e.g. to count their return values (``"parsed"``, ...) or the
    workers that ran them. RQ keeps them ``result_ttl`` (500 s by default) after they finish."""
    _check(engine)
    if engine == "rq":
        from rq.job import Job as RQJob

        queue = _rq_queue()
        try:
            ids = queue.finished_job_registry.get_job_ids(cleanup=False)
            found = []
            for job in RQJob.fetch_many(ids, connection=queue.connection):
                result = job.latest_result() if job is not None else None
                if job is not None and result is not None:
                    found.append(Job(job.id, result.worker_name, tuple(job.args), result.return_value))
            return found
        finally:
            queue.connection.close()
    from django_tasks_db.models import DBTaskResult

    rows = DBTaskResult.objects.filter(status="SUCCESSFUL")
    return [
        Job(str(row.id), (row.worker_ids or [""])[-1], tuple(row.args_kwargs["args"]), row.return_value)
        for row in rows
    ]


def running_jobs(engine: str) -> list[Job]:
    """The tasks the engine has as running (RQ's StartedJobRegistry, or RUNNING rows)."""
    _check(engine)
    if engine == "rq":
        from rq.job import Job as RQJob

        queue = _rq_queue()
        try:
            ids = queue.started_job_registry.get_job_ids(cleanup=False)
            jobs = [job for job in RQJob.fetch_many(ids, connection=queue.connection) if job is not None]
            return [Job(job.id, job.worker_name or "", tuple(job.args)) for job in jobs]
        finally:
            queue.connection.close()
    from django_tasks_db.models import DBTaskResult

    return [
        Job(str(row.id), (row.worker_ids or [""])[-1], tuple(row.args_kwargs["args"]))
        for row in DBTaskResult.objects.filter(status="RUNNING")
    ]


def wait_until(
    predicate: Callable[[], bool],
    what: str,
    timeout: float = 120.0,
    poll: float = 0.05,
    details: Callable[[], str] | None = None,
) -> None:
    """Poll ``predicate`` until it holds; AssertionError naming ``what`` (and ``details()``, e.g.
    the engine's counts and the workers' logs) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            more = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting until {what}{more}")
        time.sleep(poll)
