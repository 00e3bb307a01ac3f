"""Mutations, one module per area, composed into ``StripeMutation`` in ``aa_stripe_graphql.schema``."""
