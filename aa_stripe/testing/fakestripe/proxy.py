"""A fault-injecting, idempotency-aware reverse proxy in front of localstripe.

localstripe ignores ``Idempotency-Key`` and never fails on its own; this proxy adds both, so tests can
play "Stripe acted but we never heard" and check that retries are safe.

Order of events for one API request:

1. record it (``FaultProxy.requests``);
2. take the first queued fault matching (method, path prefix). Faults in front of the API, which
   neither forward nor store anything: ``drop_before`` closes the connection, ``status`` answers an
   error, ``hold_before`` keeps the client waiting unanswered (see 6); ``delay`` sleeps and carries on;
3. idempotency (POST with ``Idempotency-Key`` only, as at Stripe): a stored answer with the same
   fingerprint is replayed with ``Idempotent-Replayed: true``; different parameters get a 400
   ``idempotency_error``; a key whose first request is still in flight gets a 409
   ``idempotency_error`` / ``idempotency_key_in_use``, as Stripe answers (the SDK retries 409s);
4. forward to localstripe; store 2xx and 402 answers under the key. Stripe saves results only once
   the endpoint started executing, not for validation failures (our 400/404), conflicts (409), rate
   limits (429) or 5xx here (those stand for failures in front of the API). ``status_after`` is the
   exception: Stripe acted, then failed; its 5xx replaces the answer and is stored like one ("the
   result, including 500 errors, is saved"), so a retry with the key replays the 5xx. A request that
   is replayed or refused in 3 is not executed, and answers as usual whatever its fault;
5. ``drop_after`` closes the connection instead of answering: Stripe acted, the client never heard;
6. ``hold`` keeps the client waiting instead: Stripe acted and the answer is stored, but nothing is
   sent until the client hangs up (its timeout, its process killed) or ``reset()``/``stop()``
   releases it; then the connection is closed. Other requests go on meanwhile (one thread each).
   ``wait_held()``/``wait_released()`` let a test kill a worker exactly while it waits.

``forget_keys()`` drops stored answers, as Stripe does after 24 hours: the next request with an old
key is executed afresh. ``/_config/...`` and ``/js.stripe.com/...`` are forwarded untouched and never
recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aa_stripe.testing.fakestripe._http import Answer, ProxyHandler, ProxyServer, stripe_error

FAULTS = frozenset({"drop_before", "drop_after", "delay", "status", "status_after", "hold", "hold_before"})
_UNTOUCHED_PREFIXES = ("/_config/", "/js.stripe.com/")
# Hop-by-hop headers, plus those http.client / BaseHTTPRequestHandler write themselves.
_NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "content-length", "date", "server"}
)  # fmt: skip
_CACHEABLE = lambda status: 200 <= status < 300 or status == 402  # noqa: E731
UPSTREAM_TIMEOUT = 30.0


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    params: dict[str, str]  # form body, flat as sent ("metadata[a]": "1"); last value wins on repeats
    idempotency_key: str | None
    # What Stripe (or the injected fault) answered, sent or not (drop_after, hold); None if nothing did.
    status: int | None = None
    replayed: bool = False
    fault: str | None = None
    stripe_version: str | None = None  # the Stripe-Version header the client sent


@dataclass
class _Fault:
    kind: str
    method: str | None
    path_prefix: str | None
    times: int
    options: dict[str, Any]

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        )


@dataclass
class _Stored:
    fingerprint: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class _Generation:
    """Everything reset() discards; requests still running keep a reference to their own one."""

    faults: list[_Fault] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    stored: dict[str, _Stored] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    held: dict[socket.socket, RecordedRequest] = field(default_factory=dict)
    cancelled: threading.Event = field(default_factory=threading.Event)


class FaultProxy:
    """Threaded HTTP/1.1 reverse proxy on 127.0.0.1 with fault injection and Stripe-like idempotency."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self._upstream_addr = (parts.hostname, parts.port or 80)
        self._lock = threading.Lock()
        self._held_changed = threading.Condition(self._lock)
        self._gen = _Generation()
        self._server: ProxyServer | None = None
        self._serve_thread: threading.Thread | None = None
        self.url = ""
        #: Called with each API request as it arrives, before any fault or forwarding (e.g. to look
        #: at the database while the caller waits for Stripe). Reset by reset().
        self.observer: Callable[[RecordedRequest], None] | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        if self._server is not None:
            raise RuntimeError("FaultProxy already started")
        self._server = ProxyServer(self._serve)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="FaultProxy", daemon=True
        )
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; close every connection (held ones too) and join their threads."""
        if self._server is None:
            return
        self._server.shutdown()  # stops accepting; returns once serve_forever has exited
        assert self._serve_thread is not None
        self._serve_thread.join()
        with self._lock:
            self._gen.cancelled.set()  # wake requests sleeping in a "delay" fault, release held ones
        with self._server.lock:
            connections = dict(self._server.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # idle keep-alive and held threads wake up and finish
        for thread in connections.values():
            thread.join(timeout=UPSTREAM_TIMEOUT + 5)
        self._server.server_close()
        self._server = self._serve_thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget faults, recorded requests and stored idempotent answers; release held requests.

        A request still sleeping in a "delay" fault from before is woken and dropped without reaching
        the fake, so it cannot create objects in the next test."""
        with self._lock:
            self.observer = None
            old, self._gen = self._gen, _Generation()
            old.cancelled.set()
            for conn in old.held:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)  # wakes the held thread now, not at its next poll
            self._held_changed.notify_all()

    # --- test API --------------------------------------------------------------------------------
    def inject(
        self,
        fault: str,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        times: int = 1,
        **options: Any,
    ) -> None:
        """Queue a fault for the next ``times`` requests matching method and path prefix.

        Options: ``delay`` needs ``seconds``; ``status`` and ``status_after`` take ``status``
        (default 500; a 5xx for ``status_after``), ``retry_after`` (seconds, 429 defaults to 1),
        ``should_retry`` (bool, sets ``Stripe-Should-Retry``), ``message``. ``hold`` and
        ``hold_before`` take none."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(FAULTS)}")
        if fault == "delay" and "seconds" not in options:
            raise ValueError("the delay fault needs seconds=")
        if fault == "status_after" and not 500 <= int(options.get("status", 500)) <= 599:
            raise ValueError("status_after stands for Stripe failing after it acted: status must be 5xx")
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._gen.faults.append(_Fault(fault, method and method.upper(), path_prefix, times, options))

    def forget_keys(self, *keys: str) -> int:
        """Drop the stored answers of ``keys`` (all when none given), as Stripe does after 24 hours.

        Returns how many were dropped. A request with a forgotten key is executed afresh."""
        with self._lock:
            stored = self._gen.stored
            dropped = [key for key in (keys or list(stored)) if stored.pop(key, None) is not None]
        return len(dropped)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._gen.requests)

    def calls(self, method: str | None = None, path_prefix: str | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (path_prefix is None or r.path.startswith(path_prefix))
        ]

    @property
    def held(self) -> list[RecordedRequest]:
        """The requests being held by ``hold``/``hold_before`` right now, oldest first."""
        with self._lock:
            return list(self._gen.held.values())

    def wait_held(self, count: int = 1, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests are held; return them (TimeoutError after ``timeout``).

        With ``hold`` Stripe has acted and the answer is stored by then."""
        with self._held_changed:
            if not self._held_changed.wait_for(lambda: len(self._gen.held) >= count, timeout):
                raise TimeoutError(f"{len(self._gen.held)} request(s) held after {timeout}s, wanted {count}")
            return list(self._gen.held.values())

    def wait_released(self, timeout: float = 10.0) -> None:
        """Block until no request is held (their clients hung up, or reset()); TimeoutError otherwise."""
        with self._held_changed:
            if not self._held_changed.wait_for(lambda: not self._gen.held, timeout):
                raise TimeoutError(f"{len(self._gen.held)} request(s) still held after {timeout}s")

    # --- request handling --------------------------------------------------------------------------
    def _serve(self, handler: ProxyHandler, body: bytes) -> None:
        parts = urlsplit(handler.path)
        if parts.path.startswith(_UNTOUCHED_PREFIXES):
            handler.send_answer(*self._forward(handler, body))
            return

        method = handler.command
        key = handler.headers.get("Idempotency-Key") if method == "POST" else None
        record = RecordedRequest(
            method=method,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            params=dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)),
            idempotency_key=key,
            stripe_version=handler.headers.get("Stripe-Version"),
        )
        with self._lock:
            gen = self._gen
            gen.requests.append(record)
            fault = next((f for f in gen.faults if f.matches(method, parts.path)), None)
            if fault is not None:
                record.fault = fault.kind
                fault.times -= 1
                if fault.times == 0:
                    gen.faults.remove(fault)
        kind = fault.kind if fault is not None else None
        if self.observer is not None:
            self.observer(record)

        if kind == "drop_before":
            handler.drop()
            return
        if kind == "status":
            answer = self._fault_answer(fault.options)
            record.status = answer[0]
            handler.send_answer(*answer)
            return
        if kind == "hold_before":
            self._hold(gen, handler, record)
            return
        if kind == "delay" and gen.cancelled.wait(float(fault.options["seconds"])):
            handler.drop()  # reset()/stop() happened meanwhile: never reach the fake
            return

        failure = self._fault_answer(fault.options) if kind == "status_after" else None
        answer = self._idempotent(gen, handler, record, key, body, failure)
        if answer is None:
            handler.drop()
            return
        record.status = answer[0]
        if kind == "drop_after":
            handler.drop()
        elif kind == "hold":
            self._hold(gen, handler, record)
        else:
            handler.send_answer(*answer)

    def _hold(self, gen: _Generation, handler: ProxyHandler, record: RecordedRequest) -> None:
        # Registered and checked under one lock with reset(), so a reset either sees this connection
        # (and shuts it down) or has already set `cancelled`, which the wait sees at once.
        with self._held_changed:
            gen.held[handler.connection] = record
            self._held_changed.notify_all()
        try:
            handler.wait_for_hangup(gen.cancelled)
        finally:
            with self._held_changed:
                gen.held.pop(handler.connection, None)
                self._held_changed.notify_all()

    def _idempotent(
        self,
        gen: _Generation,
        handler: ProxyHandler,
        record: RecordedRequest,
        key: str | None,
        body: bytes,
        failure: Answer | None,
    ) -> Answer | None:
        if key is None:
            forwarded = self._forward(handler, body)
            return failure or forwarded
        pairs = sorted(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        fingerprint = hashlib.sha256(repr((record.method, record.path, pairs)).encode()).hexdigest()
        with self._lock:
            stored = gen.stored.get(key)
            if stored is None and key in gen.in_flight:
                return stripe_error(
                    409,
                    "idempotency_error",
                    "There is currently another in-progress request using this Idempotent Key (that "
                    f"probably means you submitted twice, and the other request is still going through): "
                    f"{key}. Please try again later.",
                    code="idempotency_key_in_use",
                )
            if stored is None:
                gen.in_flight.add(key)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                return stripe_error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters they were "
                    f"first used with. Try using a key other than '{key}' if you meant to execute a "
                    "different request.",
                )
            record.replayed = True
            return stored.status, [*stored.headers, ("Idempotent-Replayed", "true")], stored.body
        try:
            if gen.cancelled.is_set():
                return None
            forwarded = self._forward(handler, body)
            answer = failure or forwarded  # status_after: Stripe acted, then failed; the failure is saved
            if failure is not None or _CACHEABLE(answer[0]):
                with self._lock:
                    gen.stored[key] = _Stored(fingerprint, *answer)
            return answer
        finally:
            with self._lock:
                gen.in_flight.discard(key)

    @staticmethod
    def _fault_answer(options: dict[str, Any]) -> Answer:
        status = int(options.get("status", 500))
        if status == 429:
            answer = stripe_error(
                429,
                "rate_limit_error",
                options.get("message", "Too many requests hit the API too quickly (injected)."),
                code="rate_limit",
            )
        else:
            answer = stripe_error(
                status, "api_error", options.get("message", f"Injected {status} from FaultProxy.")
            )
        headers = answer[1]
        retry_after = options.get("retry_after", 1 if status == 429 else None)
        if retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        if options.get("should_retry") is not None:
            headers.append(("Stripe-Should-Retry", "true" if options["should_retry"] else "false"))
        return answer

    def _forward(self, handler: ProxyHandler, body: bytes) -> Answer:
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _NOT_FORWARDED}
        headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(*self._upstream_addr, timeout=UPSTREAM_TIMEOUT)
        try:
            conn.request(handler.command, handler.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            out = [(k, v) for k, v in response.getheaders() if k.lower() not in _NOT_FORWARDED]
            return response.status, out, data
        except OSError as exc:
            return stripe_error(502, "api_error", f"FaultProxy could not reach the fake: {exc}")
        finally:
            conn.close()
