from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import IntegrityError, models, router, transaction
from django.utils.translation import gettext_lazy as _

from aa_stripe.exceptions import StripeWebhookAlreadyParsed
from aa_stripe.guard import library_atomic
from aa_stripe.redaction import redact_secrets, redact_text
from aa_stripe.signals import stripe_webhook_stored, webhook_pre_parse

from .base import timestamp_to_datetime

logger = logging.getLogger("aa_stripe")

WebhookHandler = Callable[["StripeWebhook"], None]

# event type (or "prefix.*") -> handlers; filled by aa_stripe.webhooks.handlers from AppConfig.ready(),
# so this module never imports the webhooks package (no import cycle).
_HANDLERS: dict[str, list[WebhookHandler]] = {}


def register_webhook_handler(*event_types: str) -> Callable[[WebhookHandler], WebhookHandler]:
    """Decorator: run the handler when a StripeWebhook of one of ``event_types`` is parsed.

    ``"charge.dispute.*"`` matches every type that starts with ``charge.dispute.``.
    """

    def register(handler: WebhookHandler) -> WebhookHandler:
        for event_type in event_types:
            handlers = _HANDLERS.setdefault(event_type, [])
            if handler not in handlers:
                handlers.append(handler)
        return handler

    return register


def webhook_handlers_for(event_type: str) -> list[WebhookHandler]:
    """Handlers registered for ``event_type`` exactly, then for its ``prefix.*`` patterns."""
    found = list(_HANDLERS.get(event_type, ()))
    parts = event_type.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        found += _HANDLERS.get(".".join(parts[:cut]) + ".*", ())
    return found


class NeedsStripeObject(Exception):
    """Raised by a webhook handler that needs Stripe's current object before it can apply an event.

    ``fetch`` gets it; :meth:`StripeWebhook.parse` rolls the handler's savepoint back (its row locks
    go with it), calls ``fetch`` and runs the handler again, which then finds the object in
    ``webhook.stripe_objects[key]``.
    """

    def __init__(self, key: tuple[str, str], fetch: Callable[[], dict[str, Any]]) -> None:
        super().__init__(f"needs Stripe's {key[0]} {key[1]}")
        self.key = key
        self.fetch = fetch


#: A handler asks for at most this many Stripe objects per event.
MAX_FETCHES_PER_HANDLER = 3


def split_event_type(event_type: str | None) -> tuple[str | None, str | None]:
    """``"charge.dispute.created"`` -> ``("charge.dispute", "created")``; ``"ping"`` -> ``(None, None)``."""
    if not event_type or "." not in event_type:
        return None, None
    model, action = event_type.rsplit(".", 1)
    return model, action


class StripeWebhook(models.Model):
    """A Stripe event as delivered to the webhook endpoint, stored before it is parsed.

    ``raw_data`` is the event as Stripe sent it except for client secrets (a PaymentIntent's or
    SetupIntent's ``client_secret``, an invoice's ``confirmation_secret``), which are redacted
    before the row is saved, also in memory (:mod:`aa_stripe.redaction`): handlers see the event
    as stored, whether it is parsed at once or later.
    """

    id = models.CharField(primary_key=True, max_length=255, help_text=_("Stripe's event id (evt_...)."))
    event_type = models.CharField(
        max_length=255, blank=True, db_index=True, help_text=_("e.g. coupon.created")
    )
    stripe_created_at = models.DateTimeField(
        null=True, blank=True, help_text=_("When Stripe created the event.")
    )
    created = models.DateTimeField(auto_now_add=True, help_text=_("When we received it."))
    updated = models.DateTimeField(auto_now=True)
    is_parsed = models.BooleanField(default=False, db_index=True)
    raw_data = models.JSONField(blank=True, default=dict, help_text=_("The event exactly as Stripe sent it."))
    parse_error = models.TextField(blank=True)
    parse_attempts = models.PositiveIntegerField(default=0)

    #: Set by :meth:`parse`: the row had been parsed before (a forced re-parse). Handlers that send
    #: a signal per event, rather than per change, send it once.
    reparsing = False

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.id} ({self.event_type or 'unknown'})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is None or "raw_data" in update_fields:
            self.raw_data = redact_secrets(self.raw_data)
        super().save(*args, **kwargs)

    @property
    def data_object(self) -> dict[str, Any]:
        """The Stripe object the event carries (``data.object``)."""
        return ((self.raw_data or {}).get("data") or {}).get("object") or {}

    @property
    def event_created(self) -> datetime | None:
        return self.stripe_created_at or timestamp_to_datetime((self.raw_data or {}).get("created"))

    @classmethod
    def store_event(cls, event: dict[str, Any]) -> tuple[StripeWebhook, bool]:
        """Insert the event (its id is the primary key), committed at once.

        Returns ``(row, created)``; a duplicate delivery, also one racing this one on another
        connection, gets the existing row and ``created=False``. ``stripe_webhook_stored`` is
        sent once the new row is committed. The row's ``raw_data`` is ``event`` with its client
        secrets redacted (see :meth:`save`); ``event`` itself is left as it is.
        """
        using = router.db_for_write(cls)
        webhook = cls(
            id=event["id"],
            event_type=event.get("type") or "",
            stripe_created_at=timestamp_to_datetime(event.get("created")),
            raw_data=event,  # its client secrets are redacted by save()
        )
        try:
            # One INSERT: in autocommit it commits at once (the webhook view is non-atomic);
            # inside a caller's transaction a savepoint keeps a duplicate from breaking it.
            if transaction.get_connection(using).in_atomic_block:
                with library_atomic(using=using):
                    webhook.save(force_insert=True, using=using)
            else:
                webhook.save(force_insert=True, using=using)
        except IntegrityError:
            existing = cls.objects.using(using).filter(pk=event["id"]).first()
            if existing is None:
                raise
            return existing, False
        # robust: a failing receiver (a task queue that is down) must not turn the stored event
        # into a 500 that Stripe would retry, only to be answered "duplicate".
        transaction.on_commit(
            lambda: stripe_webhook_stored.send(sender=cls, instance=webhook), using=using, robust=True
        )
        return webhook, True

    def parse(self, save: bool = False, force: bool = False) -> None:
        """Send ``webhook_pre_parse``, run the built-in handlers, mark the row parsed.

        Raises :class:`StripeWebhookAlreadyParsed` for a parsed row unless ``force`` (a deliberate
        re-parse: the handlers are idempotent, so applying an event again changes nothing that
        the first parse set, and sends no signal of a change twice). Raises whatever a handler or
        a signal receiver raises (use :meth:`process` to record failures on the row instead).

        Each handler runs in a savepoint of its own. A handler that needs Stripe's current object
        asks for it (:class:`NeedsStripeObject`): its savepoint is rolled back, releasing the row
        locks it took, the object is fetched, and the handler runs again with it. So no row
        lock of a mirrored object is held while Stripe is called.
        """
        if self.is_parsed and not force:
            raise StripeWebhookAlreadyParsed()
        self.reparsing = self.is_parsed
        event_type = (self.raw_data or {}).get("type") or self.event_type
        event_model, event_action = split_event_type(event_type)
        webhook_pre_parse.send(
            sender=StripeWebhook,
            instance=self,
            event_type=event_type,
            event_model=event_model,
            event_action=event_action,
        )
        for handler in webhook_handlers_for(event_type or ""):
            self._run_handler(handler)
        self.is_parsed = True
        self.parse_error = ""
        if save:
            self.save()

    def _run_handler(self, handler: WebhookHandler) -> None:
        using = router.db_for_write(type(self), instance=self)
        for _round in range(MAX_FETCHES_PER_HANDLER + 1):
            try:
                with library_atomic(using=using):
                    handler(self)
                return
            except NeedsStripeObject as need:
                if need.key in self.stripe_objects:
                    raise RuntimeError(f"{handler.__qualname__} asked twice for {need.key}") from need
                self.stripe_objects[need.key] = need.fetch()
        raise RuntimeError(f"{handler.__qualname__} asked for more than {MAX_FETCHES_PER_HANDLER} objects")

    @property
    def stripe_objects(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Stripe objects fetched for this parse, by ``(service, id)`` (see :class:`NeedsStripeObject`)."""
        if not hasattr(self, "_stripe_objects"):
            self._stripe_objects: dict[tuple[str, str], dict[str, Any]] = {}
        return self._stripe_objects

    def process(self, force: bool = False) -> bool:
        """Parse and record the outcome on the row; never raises for a failed parse.

        The handlers' changes and ``is_parsed`` commit together; on failure they roll back and
        the error is saved in ``parse_error`` (the row stays unparsed, to be retried by
        ``parse_stripe_webhooks --failed``). ``force`` re-parses a parsed row (see :meth:`parse`);
        its failure is recorded in ``parse_error`` and the row stays parsed. Returns whether the
        parse succeeded.
        """
        using = router.db_for_write(type(self), instance=self)
        was_parsed = self.is_parsed
        self.parse_attempts += 1
        try:
            with library_atomic(using=using):
                self.parse(force=force)
                self.save(update_fields=["is_parsed", "parse_error", "parse_attempts", "updated"])
        except StripeWebhookAlreadyParsed:
            return True
        except Exception as err:
            logger.exception("Stripe webhook %s (%s) could not be parsed", self.id, self.event_type)
            self.is_parsed = was_parsed and force
            self.parse_error = redact_text(f"{type(err).__name__}: {err}")[:10000]
            self.save(update_fields=["is_parsed", "parse_error", "parse_attempts", "updated"])
            return False
        return True

    # --- the parse queue (parse_stripe_webhooks, the admin's re-parse action, your own workers) ---

    @classmethod
    def parse_queue(cls, include_failed: bool = False) -> models.QuerySet[StripeWebhook]:
        """Rows waiting to be parsed, oldest event first (by ``stripe_created_at``, then ``created``).

        Rows whose parse failed (``parse_error`` set) are left out unless ``include_failed``.
        """
        rows = cls.objects.filter(is_parsed=False)
        if not include_failed:
            rows = rows.filter(parse_error="")
        return rows.order_by(models.F("stripe_created_at").asc(nulls_last=True), "created", "id")

    @classmethod
    def failed_rows(cls) -> models.QuerySet[StripeWebhook]:
        """Rows whose last parse failed and that no later attempt parsed."""
        return cls.objects.filter(is_parsed=False).exclude(parse_error="")

    @classmethod
    def process_next(cls, queue: models.QuerySet[StripeWebhook] | None = None) -> StripeWebhook | None:
        """Claim the first row of ``queue`` (default :meth:`parse_queue`) and :meth:`process` it.

        Claim and parse share one short transaction holding the row's lock, taken with
        ``SKIP LOCKED``: workers on other connections (other hosts) skip that row and claim the
        next one, so each row is parsed once. SQLite has no row locks: it serialises writers.
        Returns the processed row (see ``is_parsed``/``parse_error``), or None when no row is free.
        """
        queue = cls.parse_queue() if queue is None else queue
        using = router.db_for_write(cls)
        # Databases without SKIP LOCKED (MariaDB 10.5) wait for the lock, then see the row parsed.
        skip_locked = transaction.get_connection(using).features.has_select_for_update_skip_locked
        with library_atomic(using=using):
            webhook = queue.using(using).select_for_update(skip_locked=skip_locked).first()
            if webhook is not None:
                webhook.process()
        return webhook

    def process_unless_claimed(self) -> bool | None:
        """:meth:`process` this (in-memory) row under the workers' claim: its row lock, taken with
        SKIP LOCKED. None when a worker holds it (that worker parses it) or it is parsed already."""
        using = router.db_for_write(type(self), instance=self)
        skip_locked = transaction.get_connection(using).features.has_select_for_update_skip_locked
        with library_atomic(using=using):
            unparsed = type(self).objects.using(using).filter(pk=self.pk, is_parsed=False)
            if (
                unparsed.select_for_update(skip_locked=skip_locked).values_list("pk", flat=True).first()
                is None
            ):
                return None
            return self.process()
