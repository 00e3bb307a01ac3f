from django.apps import AppConfig


class AaStripeConfig(AppConfig):
    name = "aa_stripe"
    label = "aa_stripe"
    verbose_name = "Stripe"
    # aa-stripe's tables use AutoField primary keys; keep them so existing tables carry forward.
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from aa_stripe import checks  # noqa: F401  (registers the system checks)
        from aa_stripe.redaction import install_log_filter
        from aa_stripe.signals import stripe_webhook_stored
        from aa_stripe.task_framework import enqueue_stored_webhook
        from aa_stripe.webhooks import (  # noqa: F401  (the built-in webhook handlers)
            catalog_handlers,
            handlers,
            invoice_handlers,
            payment_method_handlers,
        )

        # With STRIPE_WEBHOOK_DEFERRED_PARSING and a worker backend in TASKS, stored events go to a task.
        stripe_webhook_stored.connect(enqueue_stored_webhook, dispatch_uid="aa_stripe.enqueue_stored_webhook")
        install_log_filter()  # stripe-python logs whole bodies at DEBUG: no client secrets in them
