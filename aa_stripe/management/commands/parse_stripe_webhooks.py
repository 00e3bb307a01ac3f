"""``manage.py parse_stripe_webhooks``: parse stored Stripe events, once or as a worker."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType
from typing import Any

from django.core.management.base import CommandError, CommandParser

from aa_stripe.management.base import StripeCommand
from aa_stripe.models import StripeWebhook


@dataclass
class Tally:
    parsed: int = 0
    failed: int = 0
    failed_ids: set[str] = field(default_factory=set)

    def add(self, other: Tally) -> None:
        self.parsed += other.parsed
        self.failed += other.failed

    def summary(self) -> str:
        return f"Stripe webhooks: {self.parsed} parsed, {self.failed} failed."


class Command(StripeCommand):
    help = (
        "Parse the Stripe webhooks stored but not parsed yet (with STRIPE_WEBHOOK_DEFERRED_PARSING, "
        "or left over), oldest event first. Rows are taken in batches (--batch) with a lease "
        "(--lease): one short transaction marks them as this worker's (SELECT ... FOR UPDATE SKIP "
        "LOCKED), then each row is parsed in a short transaction of its own, so several workers, also "
        "on several hosts, share the queue without waiting for each other and parse each row once; the "
        "rows of a worker killed mid-batch are taken by the others when its lease ends. Rows whose "
        "parse failed are skipped unless --failed is given. Without --loop: one pass, then exit. Exits "
        "non-zero (with the summary) when any parse failed in this run; the error is recorded on the "
        "row (see the admin)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--failed",
            action="store_true",
            help="Also retry the rows whose parse failed before (each at most once per pass).",
        )
        parser.add_argument(
            "--limit", type=int, default=None, metavar="N", help="Parse at most N rows per pass."
        )
        parser.add_argument(
            "--batch",
            type=int,
            default=100,
            metavar="N",
            help="Rows taken at a time (default: 100).",
        )
        parser.add_argument(
            "--lease",
            type=float,
            default=60.0,
            metavar="SECONDS",
            help="How long a batch is this worker's before others may take its unparsed rows (default: 60).",
        )
        parser.add_argument(
            "--loop",
            action="store_true",
            help="Keep polling for new rows (a worker process); stops cleanly on Ctrl-C or SIGTERM.",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=5.0,
            metavar="SECONDS",
            help="With --loop: seconds to wait between passes (default: 5).",
        )
        parser.add_argument(
            "--max-loops",
            type=int,
            default=None,
            metavar="N",
            help="With --loop: stop after N passes (for tests and for recycling workers).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("limit", "max_loops", "batch"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1.")
        if options["interval"] < 0:
            raise CommandError("--interval cannot be negative.")
        if options["lease"] < 1:
            raise CommandError("--lease must be at least 1 second.")
        self.batch = options["batch"]
        self.lease = timedelta(seconds=options["lease"])
        self.verbosity = int(options["verbosity"])
        self.stopping = threading.Event()
        total = Tally()
        with self.stop_on_sigterm(options["loop"]):
            try:
                self.run(options, total)
            except KeyboardInterrupt:
                self.stderr.write("Interrupted: stopping.")
        if self.verbosity >= 1:
            self.stdout.write(total.summary())
        if total.failed:
            raise CommandError(total.summary())

    def run(self, options: dict[str, Any], total: Tally) -> None:
        passes = 0
        while True:
            tally = self.run_pass(options["failed"], options["limit"])
            total.add(tally)
            passes += 1
            if options["loop"] and self.verbosity >= 1 and (tally.parsed or tally.failed):
                self.stdout.write(f"Pass {passes}: {tally.parsed} parsed, {tally.failed} failed.")
            if not options["loop"] or self.stopping.is_set():
                return
            if options["max_loops"] is not None and passes >= options["max_loops"]:
                return
            if self.stopping.wait(options["interval"]):
                return

    def run_pass(self, include_failed: bool, limit: int | None) -> Tally:
        """Claim batches and parse their rows one at a time until none is left (or ``limit``, or a
        stop); rows of a batch left unparsed by a stop are given back at once."""
        tally = Tally()
        while not self.stopping.is_set():
            size = self.batch if limit is None else min(self.batch, limit - tally.parsed - tally.failed)
            if size < 1:
                break
            # A row that failed in this pass waits for the next one.
            token, batch = StripeWebhook.claim_batch(
                size=size, lease=self.lease, include_failed=include_failed, exclude=tally.failed_ids
            )
            if not batch:
                break
            try:
                for webhook in batch:
                    if self.stopping.is_set():
                        break
                    if webhook.process_claimed(token) is not None:
                        self.report(webhook, tally)
            finally:
                StripeWebhook.release(token)
        return tally

    def report(self, webhook: StripeWebhook, tally: Tally) -> None:
        if webhook.is_parsed:
            tally.parsed += 1
            if self.verbosity >= 2:
                self.stdout.write(f"Parsed {webhook.id} ({webhook.event_type}).")
            return
        tally.failed += 1
        tally.failed_ids.add(webhook.id)
        if self.verbosity >= 1:
            self.stderr.write(f"Failed {webhook.id} ({webhook.event_type}): {webhook.parse_error}")

    @contextmanager
    def stop_on_sigterm(self, enabled: bool) -> Iterator[None]:
        """With --loop (in the main thread only), SIGTERM finishes the current row, then stops."""
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGTERM, self.request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.verbosity >= 1:
            self.stderr.write("SIGTERM received: stopping after the current webhook.")
        self.stopping.set()
