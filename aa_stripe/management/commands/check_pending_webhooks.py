"""``manage.py check_pending_webhooks``: alarm when Stripe's events do not reach us, or fail to parse."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from django.apps import apps
from django.core.mail import mail_admins
from django.core.management.base import CommandError, CommandParser
from django.db.models import Count, Max
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.conf import stripe_settings
from aa_stripe.exceptions import AaStripeError
from aa_stripe.management.base import StripeCommand
from aa_stripe.models import StripeWebhook
from aa_stripe.models.base import timestamp_to_datetime
from aa_stripe.models.webhooks import webhook_handlers_for

logger = logging.getLogger("aa_stripe")

#: Stripe lists the events of the last 30 days only.
STRIPE_EVENTS_KEPT = timedelta(days=30)
#: also compare the events shortly before the newest stored one (deliveries arrive out of order)
LOOKBACK_MARGIN = timedelta(minutes=10)
#: at most this many ids of each kind are listed in the mail (all are counted)
MAX_LISTED = 200
_CHUNK = 500


@dataclass
class Report:
    """What the check found; ``alarm`` says whether admins must hear about it."""

    since: datetime
    until: datetime
    threshold: int
    site: str | None = None
    checked: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    failed_count: int = 0
    failed: list[StripeWebhook] = field(default_factory=list)
    queued: int = 0

    @property
    def alarm(self) -> bool:
        # More missing events than the threshold: Stripe stopped sending (or we stopped storing).
        # Any failed parse: an update that is lost until `parse_stripe_webhooks --failed` retries it.
        return len(self.missing) > self.threshold or self.failed_count > 0

    def summary(self) -> str:
        where = f" on {self.site}" if self.site else ""
        return (
            f"Stripe webhooks{where}: {len(self.missing)} of {self.checked} Stripe events missing "
            f"(threshold {self.threshold}), {self.failed_count} failed to parse, {self.queued} waiting "
            "to be parsed."
        )

    def subject(self) -> str:
        prefix = f"[{stripe_settings.ENV_PREFIX}] " if stripe_settings.ENV_PREFIX else ""
        where = f" on {self.site}" if self.site else ""
        return (
            f"{prefix}Stripe webhooks{where}: {len(self.missing)} events missing, "
            f"{self.failed_count} failed to parse"
        )

    def body(self) -> str:
        lines = [
            f"Environment: {stripe_settings.ENV_PREFIX or '-'}",
            f"Site: {self.site or '-'}",
            f"Checked the {self.checked} events Stripe created between {self.since:%Y-%m-%d %H:%M:%S} "
            f"and {self.until:%Y-%m-%d %H:%M:%S} UTC (younger ones may still be in flight).",
            "",
            f"Events Stripe has and this site has not stored: {len(self.missing)} "
            f"(alarm above {self.threshold})",
        ]
        lines += _listed(
            f"  {e['id']} {e['type']} created {e['created']:%Y-%m-%d %H:%M:%S}" for e in self.missing
        )
        lines += ["", f"Stored events whose parse failed: {self.failed_count}"]
        lines += _listed(f"  {w.id} {w.event_type}: {w.parse_error.splitlines()[0]}" for w in self.failed)
        if self.failed_count > len(self.failed):
            lines.append(f"  ... and {self.failed_count - len(self.failed)} more")
        if self.failed_count:
            lines.append("Fix the cause, then run `manage.py parse_stripe_webhooks --failed`.")
        lines += ["", f"Stored events waiting to be parsed: {self.queued}"]
        return "\n".join(lines) + "\n"


def _listed(lines: Iterable[str]) -> list[str]:
    lines = list(lines)
    more = [f"  ... and {len(lines) - MAX_LISTED} more"] if len(lines) > MAX_LISTED else []
    return lines[:MAX_LISTED] + more


class Command(StripeCommand):
    help = (
        "Check that the Stripe events of the last 30 days reached this site. Lists Stripe's events "
        "created since the newest stored one (less a 10-minute margin; the 30 days Stripe keeps when "
        "nothing is stored or the newest stored is older), ignoring events younger than "
        "--grace-minutes (still in flight), and counts those not stored as StripeWebhook rows. Also "
        "counts stored rows whose parse failed. When more events are missing than "
        "STRIPE_PENDING_WEBHOOKS_THRESHOLD (default 20), or any parse failed, mails the ids to "
        "ADMINS (with ENV_PREFIX and the site) and exits with an error, so error tracking notices. "
        "Run it from cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--site",
            type=int,
            default=None,
            metavar="ID",
            help="id of the django.contrib.sites Site named in the report (default: the first Site).",
        )
        parser.add_argument(
            "--grace-minutes",
            type=int,
            default=5,
            metavar="MINUTES",
            help="Ignore events younger than this: their delivery may be in flight (default: 5).",
        )
        parser.add_argument(
            "--threshold",
            type=int,
            default=None,
            metavar="N",
            help="Alarm when more than N events are missing (default: STRIPE_PENDING_WEBHOOKS_THRESHOLD).",
        )
        parser.add_argument(
            "--event-type",
            action="append",
            dest="event_types",
            default=None,
            metavar="TYPE",
            help="Only expect events of this type (repeatable; 'invoice.*' matches a prefix): use it "
            "when the webhook endpoint subscribes to some event types only (default: all types).",
        )
        parser.add_argument(
            "--unhandled",
            action="store_true",
            help="Instead of the check: list the stored event types that no built-in handler acts on, "
            "with their counts and newest event (reads only this database; your webhook_pre_parse "
            "receivers may handle them).",
        )

    def needs_stripe(self, options: dict[str, Any]) -> bool:
        return not options.get("unhandled")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["unhandled"]:
            self._list_unhandled()
            return
        if options["grace_minutes"] < 0:
            raise CommandError("--grace-minutes cannot be negative.")
        threshold = options["threshold"]
        threshold = int(stripe_settings.PENDING_WEBHOOKS_THRESHOLD) if threshold is None else threshold
        now = timezone.now()
        report = Report(
            since=lookback_start(now),
            until=now - timedelta(minutes=options["grace_minutes"]),
            threshold=threshold,
            site=site_name(options["site"]),
        )
        find_missing(report, options["event_types"])
        failed = StripeWebhook.failed_rows().order_by("stripe_created_at", "created")
        report.failed_count = failed.count()
        report.failed = list(failed[:MAX_LISTED])
        report.queued = StripeWebhook.parse_queue().count()
        if not report.alarm:
            if int(options["verbosity"]) >= 1:
                self.stdout.write(f"OK. {report.summary()}")
            return
        try:
            mail_admins(report.subject(), report.body())
        except Exception as err:  # the alarm below must still go off
            logger.exception("check_pending_webhooks could not mail ADMINS")
            raise CommandError(f"{report.summary()} (mail to ADMINS failed: {err})") from err
        raise CommandError(report.summary())

    def _list_unhandled(self) -> None:
        rows = [
            row
            for row in StripeWebhook.objects.values("event_type")
            .annotate(count=Count("pk"), newest=Max("stripe_created_at"))
            .order_by("-count", "event_type")
            if not webhook_handlers_for(row["event_type"])
        ]
        width = max((len(row["event_type"] or "(no type)") for row in rows), default=0)
        for row in rows:
            newest = row["newest"].isoformat() if row["newest"] else "-"
            self.stdout.write(
                f"{row['event_type'] or '(no type)':<{width}}  {row['count']:>8}  newest {newest}"
            )
        total = sum(row["count"] for row in rows)
        self.stdout.write(
            f"{len(rows)} stored event types ({total} events) that no built-in handler acts on."
        )


def lookback_start(now: datetime) -> datetime:
    """Compare Stripe's events created after this: the newest stored event less a margin, but
    never more than the 30 days Stripe keeps (also when nothing is stored yet)."""
    oldest_listed = now - STRIPE_EVENTS_KEPT
    newest = StripeWebhook.objects.aggregate(newest=Max("stripe_created_at"))["newest"]
    if newest is None:
        return oldest_listed
    return max(newest - LOOKBACK_MARGIN, oldest_listed)


def site_name(site_id: int | None) -> str | None:
    """The site named in the report: ``site_id``'s, or the first one; None without the sites framework."""
    if not apps.is_installed("django.contrib.sites"):
        if site_id is not None:
            raise CommandError("--site needs django.contrib.sites in INSTALLED_APPS.")
        return None
    from django.contrib.sites.models import Site  # only when installed

    if site_id is None:
        site = Site.objects.order_by("pk").first()
    else:
        site = Site.objects.filter(pk=site_id).first()
        if site is None:
            raise CommandError(f"There is no Site with id {site_id}.")
    if site is None:
        return None
    return f"{site.name} ({site.domain})" if site.name and site.name != site.domain else site.domain


def find_missing(report: Report, event_types: list[str] | None) -> None:
    """Fill ``report.checked``/``report.missing`` from Stripe's events in ``since..until``."""
    events = (e for e in stripe_events(report.since, report.until) if _expected(e["type"], event_types))
    while chunk := list(islice(events, _CHUNK)):
        stored = set(
            StripeWebhook.objects.filter(id__in=[e["id"] for e in chunk]).values_list("id", flat=True)
        )
        report.checked += len(chunk)
        report.missing += [e for e in chunk if e["id"] not in stored]


def stripe_events(since: datetime, until: datetime) -> Iterator[dict[str, Any]]:
    """``{"id", "type", "created"}`` of each Stripe event created after ``since``, up to ``until``."""
    params = {"created": {"gt": int(since.timestamp()), "lte": int(until.timestamp())}}
    try:
        for event in stripe_api.iterate("events", params):
            created = timestamp_to_datetime(event.get("created"))
            # filtered here too: the filter is Stripe's to honour, the window is ours to keep
            if created is not None and since < created <= until:
                yield {"id": event["id"], "type": event.get("type") or "", "created": created}
    except AaStripeError as err:
        raise CommandError(f"Could not list Stripe's events: {err}") from err


def _expected(event_type: str, patterns: list[str] | None) -> bool:
    if not patterns:
        return True
    return any(
        event_type == pattern or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))
        for pattern in patterns
    )
