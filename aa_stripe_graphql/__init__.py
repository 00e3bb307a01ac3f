"""GraphQL (graphene-django) layer over :mod:`aa_stripe`.

``aa_stripe_graphql.schema`` has ``StripeQuery``, ``StripeMutation`` and a ready ``schema``;
``aa_stripe_graphql.urls`` a ready view; :func:`validation_rules` (graphql-core's standard
rules plus this package's depth, alias and operation limits) is for a host's own view:
``GraphQLView.as_view(schema=..., validation_rules=aa_stripe_graphql.validation_rules())``.
``python -m aa_stripe_graphql.export_schema`` writes a schema as SDL (``schema.graphql``).
"""

from __future__ import annotations

from .limits import validation_rules

__all__ = ["validation_rules"]
