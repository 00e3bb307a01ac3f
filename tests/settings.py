"""Settings for the test suite: SQLite by default, PostgreSQL when DATABASE_URL is set."""

import os

import dj_database_url
import django

SECRET_KEY = "tests-only-not-a-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", "sqlite:///:memory:"),
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file-less shared-cache database still needs a name the test runner can recreate.
    DATABASES["default"]["TEST"] = {"NAME": ":memory:"}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.sites",
    "tests.testapp",
    "graphene_django",
    "aa_stripe",
    "aa_stripe_graphql",
    # Task engines for aa_stripe.tasks (TASKS stays Django's default ImmediateBackend unless a test
    # sets it): RQ on Redis through django-rq, and the database backend (its table is migrated).
    "django_rq",
    "django_tasks_db",
]

# The RQ queue of the task-engine tests: a Redis database of its own, emptied by their fixture.
RQ_QUEUES = {"default": {"URL": os.environ.get("AA_STRIPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")}}

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# A custom user model proves that the foreign keys follow STRIPE_USER_MODEL (which defaults to
# AUTH_USER_MODEL) through swappable dependencies instead of hard-coding auth.User.
AUTH_USER_MODEL = "testapp.User"
# Django 6.1+ reads MAILERS (warning without it, refusing EMAIL_BACKEND beside it); older
# versions read EMAIL_BACKEND. Mail stays in memory either way.
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
else:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SITE_ID = 1

# Fake keys only. The fake-Stripe fixture points STRIPE_API_BASE at a local server per test.
STRIPE_API_KEY = "sk_test_aa_stripe_tests"
STRIPE_WEBHOOK_ENDPOINT_SECRET = "whsec_aa_stripe_tests"
STRIPE_API_BASE = "http://127.0.0.1:9"  # unreachable unless a test asks for the fake server
STRIPE_MAX_NETWORK_RETRIES = 0
STRIPE_HTTP_TIMEOUT = 10
# A write to Stripe inside one of the library's own transactions fails the test (aa_stripe.guard).
STRIPE_TRANSACTION_GUARD = "raise"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"aa_stripe": {"handlers": ["null"], "propagate": True}},
}
