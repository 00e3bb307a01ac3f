"""For tests that run a management command as a separate OS process (``tests.subprocess_settings``)."""

from __future__ import annotations

from urllib.parse import quote

from django.db import connection


def shared_database_url(application_name: str | None = None) -> str:
    """This test's database (``test_...``) as a URL for ``AA_STRIPE_TEST_DATABASE_URL``; with
    ``application_name``, the processes' connections carry it (``pg_stat_activity``)."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "localhost"
    port = f":{db['PORT']}" if db["PORT"] else ""
    name = quote(db["NAME"], safe="")
    query = f"?application_name={quote(application_name, safe='')}" if application_name else ""
    return f"postgres://{auth}{'@' if auth else ''}{host}{port}/{name}{query}"
