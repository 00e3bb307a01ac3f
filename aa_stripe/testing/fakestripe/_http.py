"""HTTP plumbing of :mod:`aa_stripe.testing.fakestripe.proxy`: the threaded server and its handler.

Kept apart so that proxy.py reads as the proxy's rules (faults, idempotency) only.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, list[tuple[str, str]], bytes]
# How often a held connection re-checks its "released" event; reset()/stop() also shut the socket
# down, which wakes it at once, so this only bounds a missed wake-up.
HOLD_POLL = 0.5


def stripe_error(status: int, type_: str, message: str, **extra: Any) -> Answer:
    body = json.dumps({"error": {"type": type_, "message": message, **extra}}).encode()
    return status, [("Content-Type", "application/json")], body


class ProxyServer(ThreadingHTTPServer):
    """Tracks each connection's thread from the moment it is accepted, so the owner can close and join
    every one of them (socketserver only joins non-daemon threads, and only once they end)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, serve: Callable[[ProxyHandler, bytes], None]) -> None:
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.serve = serve
        self.lock = threading.Lock()
        self.connections: dict[socket.socket, threading.Thread] = {}

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self.lock:
            self.connections[request] = thread
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # closes the socket at the end
        finally:
            with self.lock:
                self.connections.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (its timeout, our own drops) is business as usual here.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the SDK's pooled connections to Stripe
    timeout = 60  # an idle keep-alive connection frees its thread eventually
    server: ProxyServer

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
        self.server.serve(self, body)

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

    def wait_for_hangup(self, released: threading.Event) -> None:
        """Block, answering nothing, until the client closes the connection (its timeout fired, its
        process was killed) or ``released`` is set; then drop the connection.

        A closed socket reads as end-of-file (or a reset); peeking tells that apart from the bytes of
        a next request, without consuming them. Whoever sets ``released`` should also shut the socket
        down, which wakes this at once instead of at the next poll."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.connection, selectors.EVENT_READ)
            while not released.is_set():
                if not selector.select(HOLD_POLL):
                    continue
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        break
                except OSError:
                    break
                # Data, not a hang-up (a pipelining client): it stays unanswered, wait without spinning.
                released.wait(HOLD_POLL)
        self.drop()
