"""Settings for a management command that a test runs as a separate OS process.

``python -m django <command> --settings=tests.subprocess_settings`` with, in the environment:

* ``AA_STRIPE_TEST_DATABASE_URL`` (required): the test database as a dj-database-url URL, e.g.
  ``postgres://postgres@127.0.0.1:5432/test_h7b``. Only a database the test committed to can be
  shared (PostgreSQL with ``transactional_db``; SQLite's in-memory test database cannot).
* ``AA_STRIPE_TEST_API_BASE`` (optional): the fake Stripe's URL (``fake_stripe.url``); without it
  Stripe stays unreachable, as in ``tests.settings``.
* ``AA_STRIPE_TEST_CHARGE_API`` (optional): ``STRIPE_CHARGE_API`` (the ``charges_api`` fixture sets it).
* ``AA_STRIPE_TEST_OPERATION_LEASE`` (optional): ``STRIPE_OPERATION_LEASE`` in seconds, e.g. ``2``
  for a test that kills a worker and waits for its lease to run out.
* ``AA_STRIPE_TEST_TASKS`` (optional): ``rq`` or ``db``, ``TASKS`` of that engine
  (``tests.task_engines.tasks_setting``); unset, ``TASKS`` stays as in ``tests.settings``.
* ``AA_STRIPE_TEST_REDIS_URL`` (optional): the Redis of RQ's ``default`` queue (``RQ_QUEUES``), e.g.
  the one ``tests.task_engines.ensure_redis()`` yields.
* ``AA_STRIPE_TEST_DEFERRED`` (optional): ``1`` turns ``STRIPE_WEBHOOK_DEFERRED_PARSING`` on, ``0`` off.
"""

import os

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from tests.settings import *  # noqa: F403

_database_url = os.environ.get("AA_STRIPE_TEST_DATABASE_URL")
if not _database_url:
    # Never fall back to DATABASE_URL: that is the database the test runner copies, not the test one.
    raise ImproperlyConfigured("tests.subprocess_settings needs AA_STRIPE_TEST_DATABASE_URL.")
DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=0)}

if os.environ.get("AA_STRIPE_TEST_CHARGE_API"):
    STRIPE_CHARGE_API = os.environ["AA_STRIPE_TEST_CHARGE_API"]

if os.environ.get("AA_STRIPE_TEST_API_BASE"):
    STRIPE_API_BASE = os.environ["AA_STRIPE_TEST_API_BASE"]

if os.environ.get("AA_STRIPE_TEST_OPERATION_LEASE"):
    STRIPE_OPERATION_LEASE = float(os.environ["AA_STRIPE_TEST_OPERATION_LEASE"])

# Task engines (tests/task_engines.py): TASKS, RQ's Redis, and the webhook view's deferred parsing.
if os.environ.get("AA_STRIPE_TEST_TASKS"):
    from tests.task_engines import tasks_setting

    TASKS = tasks_setting(os.environ["AA_STRIPE_TEST_TASKS"])

if os.environ.get("AA_STRIPE_TEST_REDIS_URL"):
    RQ_QUEUES = {"default": {"URL": os.environ["AA_STRIPE_TEST_REDIS_URL"]}}

if os.environ.get("AA_STRIPE_TEST_DEFERRED"):
    STRIPE_WEBHOOK_DEFERRED_PARSING = os.environ["AA_STRIPE_TEST_DEFERRED"] == "1"
