"""System checks of the GraphQL layer: ``aa_stripe_graphql.E001`` when graphene_django is not installed."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.checks import CheckMessage, Error, Tags, register


@register(Tags.templates)
def check_graphene_django_installed(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """graphene_django must be an installed app: GraphiQL's template and the ``graphql_schema``
    command are found through it (the schema and the JSON API work without it, so nothing else says so)."""
    # Registered once, at the first ready(); a later INSTALLED_APPS may not have this app.
    if not apps.is_installed("aa_stripe_graphql"):
        return []
    if app_configs is not None and not any(config.name == "aa_stripe_graphql" for config in app_configs):
        return []
    if apps.is_installed("graphene_django"):
        return []
    return [
        Error(
            "aa_stripe_graphql is installed without 'graphene_django' in INSTALLED_APPS.",
            hint='Add "graphene_django" to INSTALLED_APPS. It holds GraphiQL\'s template: without it '
            "the GraphQL view answers GraphiQL requests (DEBUG) with 500 TemplateDoesNotExist, and "
            "the graphql_schema command is missing.",
            id="aa_stripe_graphql.E001",
        )
    ]
