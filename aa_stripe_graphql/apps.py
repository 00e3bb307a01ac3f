from django.apps import AppConfig


class AaStripeGraphqlConfig(AppConfig):
    # The label Django gave the package before it had an AppConfig. No default_auto_field: the app
    # has no models, so there is nothing for makemigrations to see.
    name = "aa_stripe_graphql"
    label = "aa_stripe_graphql"
    verbose_name = "Stripe GraphQL"

    def ready(self) -> None:
        from aa_stripe_graphql import checks  # noqa: F401  (registers the system checks)
