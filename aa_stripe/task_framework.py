"""Django's task framework, where the host has one: ``django.tasks`` (Django 6) or the ``django-tasks``
backport (Django 5.2, ``pip install aa-stripe-graphql[tasks]``).

Nothing here needs a task framework: without one (or with Django's default ``ImmediateBackend``, or
``DummyBackend``) the library works as before, from cron commands.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from types import ModuleType
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

logger = logging.getLogger("aa_stripe")

#: Backends that run no worker: ``ImmediateBackend`` runs a task in the caller (the webhook request),
#: ``DummyBackend`` never runs it. Events are not enqueued to them.
NO_WORKER_BACKENDS = ("ImmediateBackend", "DummyBackend")


@functools.cache
def framework() -> ModuleType | None:
    """``django.tasks`` on Django 6, else the ``django_tasks`` backport, else None (looked up once:
    a failed import is searched for again on every call, and the webhook view asks per event)."""
    try:
        import django.tasks as tasks
    except ImportError:
        try:
            import django_tasks as tasks  # type: ignore[no-redef]
        except ImportError:
            return None
    return tasks


def default_backend() -> Any | None:
    """The ``TASKS['default']`` backend instance, or None without a task framework."""
    tasks = framework()
    if tasks is None:
        return None
    return tasks.task_backends[tasks.DEFAULT_TASK_BACKEND_ALIAS]


def backend_runs_workers(backend: Any | None = None) -> bool:
    """Whether ``backend`` (default: ``TASKS['default']``) hands tasks to workers: a real backend
    (RQ, the database, Celery, ...), not ``ImmediateBackend`` or ``DummyBackend``."""
    backend = default_backend() if backend is None else backend
    if backend is None:
        return False
    return not any(cls.__name__ in NO_WORKER_BACKENDS for cls in type(backend).__mro__)


def database_time() -> float:
    """Now by the clock of the database that holds the webhooks, as a Unix time: what the task that
    parses waiting events and the process that enqueued it agree on (their hosts' clocks may not).
    SQLite has no clock of its own (nor other hosts): this host's."""
    from django.db import connections, router

    from aa_stripe.models import StripeWebhook

    connection = connections[router.db_for_write(StripeWebhook)]
    query = {
        "postgresql": "SELECT EXTRACT(EPOCH FROM clock_timestamp())",
        "mysql": "SELECT UNIX_TIMESTAMP(NOW(6))",
    }
    if connection.vendor not in query:
        return time.time()
    with connection.cursor() as cursor:
        cursor.execute(query[connection.vendor])
        return float(cursor.fetchone()[0])


class _Window:
    """When this process last enqueued the task that parses every waiting event (monotonic clock)."""

    lock = threading.Lock()
    last: float | None = None
    clock = staticmethod(time.monotonic)

    @classmethod
    def open(cls, seconds: float) -> bool:
        """Whether a new task is due, taking the window if so: none was enqueued here ``seconds`` ago."""
        now = cls.clock()
        with cls.lock:
            if cls.last is not None and now - cls.last < seconds:
                return False
            cls.last = now
            return True

    @classmethod
    def reset(cls) -> None:
        with cls.lock:
            cls.last = None


@receiver(setting_changed)
def _new_window_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("TASKS", "STRIPE_WEBHOOK_DEFERRED_PARSING", "STRIPE_WEBHOOK_ENQUEUE_WINDOW"):
        _Window.reset()


def enqueue_stored_webhook(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``stripe_webhook_stored`` receiver: with STRIPE_WEBHOOK_DEFERRED_PARSING and a worker
    backend, hand the committed event to a worker.

    With ``STRIPE_WEBHOOK_ENQUEUE_WINDOW`` = W seconds (default 0.5), this process enqueues
    :func:`aa_stripe.tasks.parse_waiting_stripe_webhooks` at most once per W: that task parses every
    waiting event in batches and ends only after finding none W seconds or more after it was
    enqueued (by the database's clock), so an event stored within W of the enqueue is parsed by it
    (it starts after the enqueue, and looks last after the event was stored). Bursts cost one
    enqueue (and one read of the database's clock), not one per event.
    With W = 0, one :func:`aa_stripe.tasks.parse_stripe_webhook` per event.

    An enqueue that fails (the broker is down) loses nothing: the event is stored, the next event
    tries again, and ``parse_stripe_webhooks`` (cron) parses what no task did.
    """
    from aa_stripe.conf import stripe_settings

    if not stripe_settings.WEBHOOK_DEFERRED_PARSING or framework() is None:
        return
    try:
        if not backend_runs_workers():
            return
        from aa_stripe import tasks

        window = float(stripe_settings.WEBHOOK_ENQUEUE_WINDOW)
        if window <= 0:
            tasks.parse_stripe_webhook.enqueue(instance.pk)
        elif _Window.open(window):
            try:
                tasks.parse_waiting_stripe_webhooks.enqueue(linger=window, enqueued_at=database_time())
            except Exception:
                _Window.reset()  # the next event enqueues again
                raise
    except Exception as err:  # the broker is down, or TASKS names a backend that cannot be loaded
        logger.warning(
            "Stripe webhook %s stored but not enqueued (%s: %s); parse_stripe_webhooks will parse it",
            instance.pk,
            type(err).__name__,
            err,
        )
