"""Real receivers for a daemon under test: an HTTP server that records what it is sent (and
can refuse, or hang), and an SMTP server; both in threads of the test process."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Hook:
    """What the HTTP receiver was sent, in order; `status` is what it answers, None: hang."""

    port: int = 0
    status: int | None = 200
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, path: str) -> list[Any]:
        """The JSON bodies sent to `path`."""
        with self.lock:
            return [body for p, _, body in self.requests if p == path]

    def keys(self) -> list[str]:
        """The Idempotency-Key header of every request."""
        with self.lock:
            return [h.get("Idempotency-Key", "") for _, h, _ in self.requests]


@contextmanager
def http_receiver(port: int = 0) -> Iterator[Hook]:
    """Serve on 127.0.0.1:`port` (0: a free one) until the block ends."""
    hook = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"null")
            with hook.lock:
                hook.requests.append((self.path, dict(self.headers), body))
            if hook.status is None:
                hook.release.wait(30)  # hang until the test lets go
                return
            self.send_response(hook.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}')

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.release.set()
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    """Messages the SMTP receiver accepted: (envelope recipients, parsed message)."""

    port: int = 0
    messages: list[tuple[list[str], Message]] = field(default_factory=list)

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Keep the message."""
        content = envelope.original_content or b""
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(content)))
        return "250 OK"


@contextmanager
def smtp_receiver(port: int) -> Iterator[Mailbox]:
    """Run a plain SMTP server on 127.0.0.1:`port` until the block ends."""
    box = Mailbox(port=port)
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
