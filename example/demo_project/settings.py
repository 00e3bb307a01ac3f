"""Settings of the demo host project: aa_stripe and aa_stripe_graphql installed as README says.

Everything Stripe-related comes from the environment, which ``run_demo.py`` fills in:

* offline (default): ``STRIPE_API_BASE`` points at the local fake Stripe server it started, with a
  fake secret key, a fake publishable key and a fresh ``whsec_`` secret registered with the fake;
* real Stripe test mode: ``STRIPE_API_KEY``, ``STRIPE_PUBLISHABLE_KEY`` and
  ``STRIPE_WEBHOOK_ENDPOINT_SECRET`` taken from your environment.

Not for production: DEBUG is on and the secret key below is public.
"""

import os
from pathlib import Path

import django
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "demo-only-not-a-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "demo_project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DATABASE", str(BASE_DIR.parent / "demo.sqlite3")),
        # The runserver process (webhooks) and the seeding command write at the same time:
        # wait for the lock instead of failing, and take it at BEGIN so two writers never deadlock.
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL;",
        },
    }
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "graphene_django",
    "aa_stripe",
    "aa_stripe_graphql",
    "demo_project",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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

if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

# --- aa_stripe -------------------------------------------------------------------------------------
STRIPE_API_KEY = os.environ.get("STRIPE_API_KEY", "")
if STRIPE_API_KEY and not STRIPE_API_KEY.startswith(("sk_test_", "rk_test_")):
    # Also when started without run_demo.py (manage.py runserver): a demo never takes real money.
    raise ImproperlyConfigured("The demo takes test-mode keys only (STRIPE_API_KEY=sk_test_...).")
STRIPE_WEBHOOK_ENDPOINT_SECRET = os.environ.get("STRIPE_WEBHOOK_ENDPOINT_SECRET", "")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE") or None  # None: Stripe itself
STRIPE_HTTP_TIMEOUT = 20
# Not a library setting: the demo page hands it to stripe.js.
STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "")
# Offline, the fake server serves a stand-in stripe.js; with real keys, Stripe's own.
STRIPE_JS_URL = f"{STRIPE_API_BASE}/js.stripe.com/v3/" if STRIPE_API_BASE else "https://js.stripe.com/v3/"

# Not a library setting: run_demo.py's per-run token, answered at /_demo/ready (views.ready).
DEMO_READY_TOKEN = os.environ.get("DEMO_READY_TOKEN", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "aa_stripe": {"handlers": ["console"], "level": "INFO"},
        # What a GraphQL client sees as INTERNAL_ERROR, in full for the person running the demo.
        "aa_stripe_graphql": {"handlers": ["console"], "level": "INFO"},
    },
}
