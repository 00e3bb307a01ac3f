"""Settings of a host project that used aa-stripe 0.13 (auth.User, no admin), for the upgrade test.

The database comes from UPGRADE_DATABASE_URL (a SQLite file or a scratch PostgreSQL database the
test made); Stripe from STRIPE_API_BASE (the fake the test started).
"""

import os

import dj_database_url

SECRET_KEY = "upgrade-test-not-a-secret"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.sites",
    "aa_stripe",
]
SITE_ID = 1
DATABASES = {"default": dj_database_url.parse(os.environ["UPGRADE_DATABASE_URL"], conn_max_age=0)}
STRIPE_API_KEY = os.environ.get("STRIPE_API_KEY", "sk_test_aa_stripe_tests")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:9")
STRIPE_WEBHOOK_ENDPOINT_SECRET = "whsec_upgrade_test"
STRIPE_MAX_NETWORK_RETRIES = 0
STRIPE_HTTP_TIMEOUT = 10
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"aa_stripe": {"handlers": ["null"], "propagate": False}},
}
