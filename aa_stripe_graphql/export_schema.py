"""Export a graphene schema as SDL, the text of ``schema.graphql``:

    python -m aa_stripe_graphql.export_schema [--schema dotted.path] [--out schema.graphql]

With ``DJANGO_SETTINGS_MODULE`` set (a host project) Django is set up from those settings; without
it (a clone of this repository) from :data:`MINIMAL_SETTINGS`, which are enough to build the schema.
``--schema`` defaults to this package's ``aa_stripe_graphql.schema.schema``; ``--out -`` writes to
standard output. The text is graphene-django's ``graphql_schema --out x.graphql`` byte for byte.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

DEFAULT_SCHEMA = "aa_stripe_graphql.schema.schema"

# Only what importing the models and types needs: no database is opened, no Stripe called.
MINIMAL_SETTINGS: dict[str, Any] = {
    "INSTALLED_APPS": [
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "aa_stripe",
        "graphene_django",
        "aa_stripe_graphql",
    ],
    "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    "USE_TZ": True,
    "STRIPE_API_KEY": "sk_test_export_schema",
}


def setup_django() -> None:
    """Set Django up unless it is already (a host's process, the test suite)."""
    import django
    from django.apps import apps
    from django.conf import settings

    if apps.ready:
        return
    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        settings.configure(**MINIMAL_SETTINGS)
    django.setup()


def schema_text(schema: str = DEFAULT_SCHEMA) -> str:
    """The SDL of the graphene ``Schema`` at the dotted path ``schema``, as ``schema.graphql`` holds it."""
    setup_django()
    from django.utils.module_loading import import_string
    from graphql import print_schema

    return print_schema(import_string(schema).graphql_schema)


def write_schema(out: str, schema: str = DEFAULT_SCHEMA) -> None:
    """Write :func:`schema_text` to the file ``out`` (``-``: standard output)."""
    text = schema_text(schema)
    if out == "-":
        sys.stdout.write(text)
        return
    # newline="\n": the same bytes on Windows, so the drift test compares like with like.
    with open(out, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aa_stripe_graphql.export_schema",
        description="Write a graphene schema as SDL. Uses DJANGO_SETTINGS_MODULE when it is set, "
        "else minimal settings of its own.",
    )
    parser.add_argument(
        "--schema",
        default=DEFAULT_SCHEMA,
        help=f"dotted path of a graphene Schema (default {DEFAULT_SCHEMA})",
    )
    parser.add_argument(
        "--out", default="schema.graphql", help="file to write (default schema.graphql; - for stdout)"
    )
    options = parser.parse_args(argv)
    # A wrong settings module or --schema is the user's to fix: one line, not a traceback.
    try:
        setup_django()
    except ImportError as err:
        settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
        print(f"export_schema: cannot load DJANGO_SETTINGS_MODULE={settings_module}: {err}", file=sys.stderr)
        return 1
    try:
        write_schema(options.out, options.schema)
    except ImportError as err:
        print(f"export_schema: cannot import --schema {options.schema}: {err}", file=sys.stderr)
        return 1
    if options.out != "-":
        print(f"Wrote {options.schema} to {options.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
