"""A fault-injecting, idempotency-aware reverse proxy in front of localstripe.

localstripe ignores ``Idempotency-Key`` and never fails on its own; this proxy adds both, so tests can
play "Stripe acted but we never heard" and check that retries are safe.

Order of events for one API request:

1. record it (``FaultProxy.requests``);
2. take the first queued fault matching (method, path prefix): ``drop_before`` closes the connection,
   ``status`` answers an error, ``delay`` sleeps and carries on; none of them forwards or caches;
3. idempotency (POST with ``Idempotency-Key`` only, as at Stripe): a stored answer with the same
   fingerprint is replayed with ``Idempotent-Replayed: true``; different parameters get a 400
   ``idempotency_error``; a key whose first request is still in flight gets a 409
   ``idempotency_error`` / ``idempotency_key_in_use``, as Stripe answers (the SDK retries 409s);
4. forward to localstripe; store 2xx and 402 answers under the key. Stripe saves results only once
   the endpoint started executing, not for validation failures (our 400/404), conflicts (409), rate
   limits (429) or 5xx here (those stand for failures in front of the API);
5. ``drop_after`` closes the connection instead of answering: Stripe acted, the client never heard.

``/_config/...`` and ``/js.stripe.com/...`` are forwarded untouched and never recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import socket
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

FAULTS = frozenset({"drop_before", "drop_after", "delay", "status"})
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
    status: int | None = None  # what Stripe (or the injected fault) answered; None if nothing did
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
    cancelled: threading.Event = field(default_factory=threading.Event)


def _stripe_error(status: int, type_: str, message: str, **extra: Any) -> tuple[int, list, bytes]:
    body = json.dumps({"error": {"type": type_, "message": message, **extra}}).encode()
    return status, [("Content-Type", "application/json")], body


class _Server(ThreadingHTTPServer):
    """Tracks each connection's thread from the moment it is accepted, so stop() can close and join
    every one of them (socketserver only joins non-daemon threads, and only once they end)."""

    daemon_threads = True
    block_on_close = False
    proxy: FaultProxy

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self.proxy._lock:
            self.proxy._connections[request] = thread
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # closes the socket at the end
        finally:
            with self.proxy._lock:
                self.proxy._connections.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (its timeout, our own drops) is business as usual here.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the SDK's pooled connections to Stripe
    timeout = 60  # an idle keep-alive connection frees its thread eventually
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet; the recorded requests are the log

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        body = self._read_body()
        self.server.proxy._serve(self, body)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = _handle

    def send_answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client gave up (e.g. its timeout fired during a delay)

    def drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class FaultProxy:
    """Threaded HTTP/1.1 reverse proxy on 127.0.0.1 with fault injection and Stripe-like idempotency."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self._upstream_addr = (parts.hostname, parts.port or 80)
        self._lock = threading.Lock()
        self._gen = _Generation()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self.url = ""

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        if self._server is not None:
            raise RuntimeError("FaultProxy already started")
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="FaultProxy", daemon=True
        )
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()  # stops accepting; returns once serve_forever has exited
        assert self._serve_thread is not None
        self._serve_thread.join()
        with self._lock:
            self._gen.cancelled.set()  # wake requests sleeping in a "delay" fault
            connections = dict(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # idle keep-alive threads wake up and finish
        for thread in connections.values():
            thread.join(timeout=UPSTREAM_TIMEOUT + 5)
        self._server.server_close()
        self._server = self._serve_thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget faults, recorded requests and stored idempotent answers.

        A request still sleeping in a "delay" fault from before is woken and dropped without reaching
        the fake, so it cannot create objects in the next test."""
        with self._lock:
            self._gen.cancelled.set()
            self._gen = _Generation()

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

        Options: ``delay`` needs ``seconds``; ``status`` takes ``status`` (default 500), ``retry_after``
        (seconds, 429 defaults to 1), ``should_retry`` (bool, sets ``Stripe-Should-Retry``),
        ``message``."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(FAULTS)}")
        if fault == "delay" and "seconds" not in options:
            raise ValueError("the delay fault needs seconds=")
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._gen.faults.append(_Fault(fault, method and method.upper(), path_prefix, times, options))

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

    # --- request handling --------------------------------------------------------------------------
    def _serve(self, handler: _Handler, body: bytes) -> None:
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

        if fault is not None and fault.kind == "drop_before":
            handler.drop()
            return
        if fault is not None and fault.kind == "status":
            answer = self._fault_answer(fault.options)
            record.status = answer[0]
            handler.send_answer(*answer)
            return
        delayed = fault is not None and fault.kind == "delay"
        if delayed and gen.cancelled.wait(float(fault.options["seconds"])):
            handler.drop()  # reset()/stop() happened meanwhile: never reach the fake
            return

        answer = self._idempotent(gen, handler, record, key, body)
        if answer is None:
            handler.drop()
            return
        record.status = answer[0]
        if fault is not None and fault.kind == "drop_after":
            handler.drop()
        else:
            handler.send_answer(*answer)

    def _idempotent(
        self, gen: _Generation, handler: _Handler, record: RecordedRequest, key: str | None, body: bytes
    ) -> tuple[int, list, bytes] | None:
        if key is None:
            return self._forward(handler, body)
        pairs = sorted(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        fingerprint = hashlib.sha256(repr((record.method, record.path, pairs)).encode()).hexdigest()
        with self._lock:
            stored = gen.stored.get(key)
            if stored is None and key in gen.in_flight:
                return _stripe_error(
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
                return _stripe_error(
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
            answer = self._forward(handler, body)
            if _CACHEABLE(answer[0]):
                with self._lock:
                    gen.stored[key] = _Stored(fingerprint, *answer)
            return answer
        finally:
            with self._lock:
                gen.in_flight.discard(key)

    @staticmethod
    def _fault_answer(options: dict[str, Any]) -> tuple[int, list, bytes]:
        status = int(options.get("status", 500))
        if status == 429:
            answer = _stripe_error(
                429,
                "rate_limit_error",
                options.get("message", "Too many requests hit the API too quickly (injected)."),
                code="rate_limit",
            )
        else:
            answer = _stripe_error(
                status, "api_error", options.get("message", f"Injected {status} from FaultProxy.")
            )
        headers = answer[1]
        retry_after = options.get("retry_after", 1 if status == 429 else None)
        if retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        if options.get("should_retry") is not None:
            headers.append(("Stripe-Should-Retry", "true" if options["should_retry"] else "false"))
        return answer

    def _forward(self, handler: _Handler, body: bytes) -> tuple[int, list, bytes]:
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
            return _stripe_error(502, "api_error", f"FaultProxy could not reach the fake: {exc}")
        finally:
            conn.close()
