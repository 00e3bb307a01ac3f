"""What every management command of aa_stripe that calls Stripe shares."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from aa_stripe.conf import stripe_settings

MISSING_API_KEY = (
    "STRIPE_API_KEY is not set: add your Stripe secret key (sk_test_... or sk_live_...) to the "
    "settings; this command calls Stripe."
)


class StripeCommand(BaseCommand):
    """A command that calls Stripe: without ``STRIPE_API_KEY`` it stops before doing anything,
    with one line naming the setting (a ``CommandError``), instead of a traceback mid-run."""

    def needs_stripe(self, options: dict[str, Any]) -> bool:
        """Whether this invocation calls Stripe (some options only read the database)."""
        return True

    def execute(self, *args: Any, **options: Any) -> Any:
        if not stripe_settings.API_KEY and self.needs_stripe(options):
            raise CommandError(MISSING_API_KEY)
        return super().execute(*args, **options)


NO_TASK_FRAMEWORK = (
    "--enqueue needs Django's task framework: Django 6, or on Django 5.2 the django-tasks backport "
    "(pip install 'aa-stripe-graphql[tasks]'), and a worker backend in TASKS."
)


def enqueue(command: BaseCommand, task_name: str, *args: Any, **kwargs: Any) -> Any:
    """Enqueue the task ``task_name`` of :mod:`aa_stripe.tasks` on ``TASKS['default']``; a
    ``CommandError`` naming what is missing without a task framework. Returns the task result."""
    from aa_stripe.task_framework import framework

    if framework() is None:
        raise CommandError(NO_TASK_FRAMEWORK)
    from aa_stripe import tasks

    return getattr(tasks, task_name).enqueue(*args, **kwargs)


def warn_without_workers(command: BaseCommand) -> None:
    """Before enqueuing: a ``CommandError`` without a task framework or with a ``TASKS['default']``
    that cannot be loaded; a warning when it runs no worker (tasks run here, or never)."""
    from aa_stripe.task_framework import NO_WORKER_BACKENDS, backend_runs_workers, default_backend, framework

    if framework() is None:
        raise CommandError(NO_TASK_FRAMEWORK)
    try:
        backend = default_backend()
    except Exception as err:
        raise CommandError(f"--enqueue: TASKS['default'] cannot be loaded: {err}") from err
    if backend is not None and not backend_runs_workers(backend):
        command.stderr.write(
            f"TASKS['default'] is {type(backend).__name__} ({' or '.join(NO_WORKER_BACKENDS)} run no "
            "worker): the tasks run in this process, or never."
        )


class RefreshWalkCommand(StripeCommand):
    """A refresh command whose whole walk can be enqueued as one task (``--enqueue``): Stripe's lists
    are cursor-paged, and marking what was not seen needs the whole walk in one run."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="Enqueue the whole walk as one task (aa_stripe.tasks.run_refresh_command) on "
            "TASKS['default'] instead of running it here.",
        )
        return parser

    def needs_stripe(self, options: dict[str, Any]) -> bool:
        return not options.get("enqueue")

    def execute(self, *args: Any, **options: Any) -> Any:
        if not options.get("enqueue"):
            return super().execute(*args, **options)
        for stream in ("stdout", "stderr"):  # as BaseCommand.execute() does
            if options.get(stream):
                setattr(self, stream, OutputWrapper(options[stream]))
        own = argparse.ArgumentParser(add_help=False)
        self.add_arguments(own)  # type: ignore[arg-type]
        walk_options = {a.dest: options[a.dest] for a in own._actions if a.dest in options}
        name = type(self).__module__.rsplit(".", 1)[-1]
        warn_without_workers(self)
        try:
            result = enqueue(self, "run_refresh_command", name, walk_options)
        except CommandError:
            raise
        except Exception as err:  # the broker is down: nothing was enqueued
            raise CommandError(f"{name} --enqueue: not enqueued: {type(err).__name__}: {err}") from err
        if int(options.get("verbosity", 1)) >= 1:
            self.stdout.write(f"{name}: the walk is enqueued (task {result.id}).")
        return None
