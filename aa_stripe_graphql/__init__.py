"""GraphQL (graphene-django) layer over :mod:`aa_stripe`.

Types, queries and mutations arrive with the GraphQL issue; the package is importable so
that host projects can already list it in INSTALLED_APPS.
"""
