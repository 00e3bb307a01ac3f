from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, models, router, transaction
from django.db.models.functions import Now
from django.utils import timezone
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
    lease_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("A parse_stripe_webhooks worker has taken the row until then (see lease_token)."),
    )
    lease_token = models.CharField(
        max_length=32, blank=True, help_text=_("The worker's batch that took the row (empty: none).")
    )

    #: Set by :meth:`parse`: the row had been parsed before (a forced re-parse). Handlers that send
    #: a signal per event, rather than per change, send it once.
    reparsing = False

    class Meta:
        ordering = ["-created"]
        indexes = [
            # The parse queue, oldest event first: only the rows waiting (a partial index where the
            # database has them), so claiming a batch reads the head of the backlog, not all of it.
            # (PostgreSQL sorts NULLs last in an ascending index, as the queue does.)
            models.Index(
                fields=["stripe_created_at", "created", "id"],
                name="aa_stripe_webhook_queue",
                condition=models.Q(is_parsed=False),
            ),
        ]

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
        self._parse(reparsing=self.is_parsed)
        self.is_parsed = True
        self.parse_error = ""
        if save:
            self.save()

    def _parse(self, reparsing: bool) -> None:
        """Send ``webhook_pre_parse`` and run the built-in handlers (see :meth:`parse`)."""
        self.reparsing = reparsing
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

    def _run_handler(self, handler: WebhookHandler) -> None:
        using = router.db_for_write(type(self), instance=self)
        raced = False
        for _round in range(MAX_FETCHES_PER_HANDLER + 2):
            try:
                with library_atomic(using=using):
                    handler(self)
                return
            except NeedsStripeObject as need:
                if need.key in self.stripe_objects:
                    raise RuntimeError(f"{handler.__qualname__} asked twice for {need.key}") from need
                self.stripe_objects[need.key] = need.fetch()
            except IntegrityError:
                # Another parse inserted the same new row first (two events of an object not mirrored
                # yet, parsed at once; PostgreSQL made this insert wait for that one's commit): its
                # savepoint is rolled back and the handler runs once more, finding the row.
                if raced:
                    raise
                raced = True
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
        self.lease_until, self.lease_token = None, ""  # the outcome ends any worker's lease on it
        fields = ["is_parsed", "parse_error", "parse_attempts", "lease_until", "lease_token", "updated"]
        try:
            with library_atomic(using=using):
                self.parse(force=force)
                self.save(update_fields=fields)
        except StripeWebhookAlreadyParsed:
            return True
        except Exception as err:
            logger.exception("Stripe webhook %s (%s) could not be parsed", self.id, self.event_type)
            self.is_parsed = was_parsed and force
            self.parse_error = redact_text(f"{type(err).__name__}: {err}")[:10000]
            self.save(update_fields=fields)
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

    # --- batches with leases (parse_stripe_webhooks) ------------------------------------------------

    @classmethod
    def claim_batch(
        cls,
        *,
        size: int = 100,
        lease: timedelta = timedelta(seconds=60),
        include_failed: bool = False,
        exclude: Iterable[str] = (),
    ) -> tuple[str, list[StripeWebhook]]:
        """Take up to ``size`` rows of :meth:`parse_queue` for one worker until ``lease`` from now.

        One short transaction: the rows are locked with ``SKIP LOCKED`` while they are marked with
        the batch's token and deadline, so workers (on any host) never take the same row and never
        wait for each other. Rows another worker took are left alone until their lease ends (a
        worker killed mid-batch: its rows are taken again then). Deadlines are the database's clock,
        not the hosts'. Returns the token and the rows, oldest event first; parse each with
        :meth:`process_claimed`, then :meth:`release` the token.
        """
        using = router.db_for_write(cls)
        skip_locked = transaction.get_connection(using).features.has_select_for_update_skip_locked
        token = uuid.uuid4().hex
        queue = cls.parse_queue(include_failed=include_failed).using(using)
        queue = queue.filter(models.Q(lease_until__isnull=True) | models.Q(lease_until__lte=Now()))
        exclude = list(exclude)
        if exclude:
            queue = queue.exclude(id__in=exclude)
        with library_atomic(using=using):
            ids = list(queue.select_for_update(skip_locked=skip_locked).values_list("id", flat=True)[:size])
            if not ids:
                return token, []
            until = models.ExpressionWrapper(Now() + lease, output_field=models.DateTimeField())
            cls.objects.using(using).filter(id__in=ids).update(lease_until=until, lease_token=token)
        rows = cls.objects.using(using).in_bulk(ids)
        return token, [rows[id] for id in ids if id in rows]

    def process_claimed(self, token: str) -> bool | None:
        """Parse this row of a batch taken by :meth:`claim_batch` under ``token``, in a short
        transaction of its own; the outcome is recorded on the row (see :meth:`process`).

        The row is marked parsed first, only while it is still this batch's and unparsed; None when
        it is not (its lease ran out and another worker took it, or the webhook view parsed it).
        A failed parse rolls the transaction back and records the error on the row, unless another
        worker has taken the row meanwhile.
        """
        mine = type(self).objects.filter(pk=self.pk, is_parsed=False, lease_token=token)
        return self._process_marked(mine, failed=mine)

    @classmethod
    def release(cls, token: str) -> int:
        """Give back the rows of a batch its worker did not parse (stopping early); returns how many."""
        using = router.db_for_write(cls)
        return (
            cls.objects.using(using)
            .filter(lease_token=token, is_parsed=False)
            .update(lease_until=None, lease_token="")
        )

    def _process_marked(
        self,
        rows: models.QuerySet[StripeWebhook],
        failed: models.QuerySet[StripeWebhook],
        skip_locked: bool = False,
    ) -> bool | None:
        """Mark the row parsed through ``rows`` (its conditions say when the row is ours to parse),
        then parse it in the same transaction; None when ``rows`` matched nothing. A failure is
        recorded through ``failed`` (nothing when it matches nothing: someone else has the row).
        ``skip_locked``: lock the row first with SKIP LOCKED, so that a row someone is parsing is
        passed over (None) rather than waited for."""
        using = router.db_for_write(type(self), instance=self)
        rows, before = rows.using(using), (self.parse_attempts, self.lease_until, self.lease_token)
        marked = {"is_parsed": True, "parse_error": "", "lease_until": None, "lease_token": ""}
        done = False
        try:
            with library_atomic(using=using):
                if skip_locked:
                    skip = transaction.get_connection(using).features.has_select_for_update_skip_locked
                    if rows.select_for_update(skip_locked=skip).values_list("pk", flat=True).first() is None:
                        return None
                attempts = models.F("parse_attempts") + 1
                if not rows.update(**marked, parse_attempts=attempts, updated=timezone.now()):
                    return None
                # The instance says what the row says now: a receiver that saves it keeps it parsed.
                self.is_parsed, self.parse_error, self.lease_until, self.lease_token = True, "", None, ""
                self.parse_attempts = before[0] + 1
                self._parse(reparsing=False)
                done = True
        except Exception as err:
            if done:
                raise  # after the commit (an on_commit receiver that is not robust): the parse stands
            logger.exception("Stripe webhook %s (%s) could not be parsed", self.id, self.event_type)
            self.is_parsed, self.parse_attempts = False, before[0] + 1
            self.lease_until, self.lease_token = None, ""
            self.parse_error = redact_text(f"{type(err).__name__}: {err}")[:10000]
            # The transaction above is rolled back: record the failure unless the row is not ours now.
            if not failed.using(using).update(
                parse_error=self.parse_error,
                parse_attempts=models.F("parse_attempts") + 1,
                lease_until=None,
                lease_token="",
                updated=timezone.now(),
            ):
                self.parse_attempts, self.lease_until, self.lease_token = before
            return False
        return True

    def process_unless_claimed(self) -> bool | None:
        """:meth:`process` this (in-memory) row unless someone else parses it: its row lock is taken
        with SKIP LOCKED. None when another connection holds it (that one parses it) or it is parsed
        already. A row a worker has leased but not reached yet is parsed here (the worker then finds
        it parsed and passes over it)."""
        unparsed = type(self).objects.filter(pk=self.pk, is_parsed=False)
        return self._process_marked(unparsed, failed=unparsed, skip_locked=True)
