"""``end_subscription``: the name aa-stripe's README used for ``end_subscriptions``."""

from aa_stripe.management.commands.end_subscriptions import Command as EndSubscriptionsCommand


class Command(EndSubscriptionsCommand):
    command_name = "end_subscription"
