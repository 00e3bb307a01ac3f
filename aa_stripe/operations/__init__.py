"""The operations journal: every write to Stripe is a :class:`StripeOperation`.

``record`` holds the model, ``journal`` the one way a write happens: plan -> claim -> send ->
record, each step its own short transaction, none open while Stripe is called.
"""
