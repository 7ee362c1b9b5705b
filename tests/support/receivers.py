"""Receivers of alerts started by a test on 127.0.0.1: a webhook (a threaded HTTP server recording each
POST) and a mail server (aiosmtpd recording each message). Real sockets, so what the notifiers send is
what a real receiver would get. A port can be chosen before anything listens on it, so a test can
deliver to a receiver that is down and start it on that port afterwards."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.net import free_port

LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class WebhookRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float = 0.0  # time.time() when it arrived (the alerts benchmark times deliveries)


class WebhookReceiver:
    """A Slack-like webhook at ``url``: answers every POST with ``status`` and records it (headers,
    JSON body), in arrival order. A context manager: listening inside, gone outside."""

    def __init__(self, port: int | None = None, path: str = "/services/T000/B000/not-a-token", status: int = 200):
        self.port = port or free_port()
        self.path = path
        self.status = status
        self.requests: list[WebhookRequest] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}{self.path}"

    def connection(self) -> str:
        """The Airflow connection (JSON) of this webhook: the whole URL as its host."""
        return json.dumps({"conn_type": "http", "host": self.url})

    def __enter__(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.requests.append(WebhookRequest(self.path, dict(self.headers), body, time.time()))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: object) -> None:  # quiet: the test reads ``requests``
                pass

        self._server = ThreadingHTTPServer((LOCALHOST, self.port), Handler)
        threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


class _Inbox:
    """aiosmtpd's handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """A mail server at ``127.0.0.1:port`` (no TLS, no login) recording each message it accepts."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._inbox = _Inbox()
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[EmailMessage]:
        return self._inbox.messages

    def connection(self) -> str:
        """The Airflow connection (JSON) of this server: plain SMTP, as the test server speaks no TLS."""
        extra = {"disable_ssl": True, "disable_tls": True, "timeout": 10}
        return json.dumps({"conn_type": "smtp", "host": LOCALHOST, "port": self.port, "extra": extra})

    def __enter__(self) -> Self:
        self._controller = Controller(self._inbox, hostname=LOCALHOST, port=self.port)
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        assert self._controller is not None
        self._controller.stop()
