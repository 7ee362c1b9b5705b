"""A real HTTP server in front of an exchange's REST API that can change its answers.

For what the sandbox cannot be made to do: a ``historicalTrades`` row with a value outside the trade
contract, or a history that lags behind (pages that end early). Requests go over real sockets to
the proxy and on to the exchange; only the JSON of a 200 answer is handed to ``rewrite``.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

# (endpoint, query parameters, decoded body) -> the body to answer instead
Rewrite = Callable[[str, dict[str, str], Any], Any]
PASSED_HEADERS = ("Content-Type", "X-MBX-USED-WEIGHT-1M", "Retry-After")


class LocalServer:
    """An HTTP server on a free port of 127.0.0.1, serving in a thread for a ``with`` block."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


class RestProxy(LocalServer):
    """``with RestProxy(sandbox.rest_url, rewrite) as proxy:`` serves ``proxy.url`` until the block ends."""

    def __init__(self, upstream: str, rewrite: Rewrite | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.rewrite = rewrite  # may be changed (or set to None) while the proxy runs
        self.requests: Counter[str] = Counter()  # per endpoint
        super().__init__(self._handler())

    def _forward(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"{self.upstream}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def _answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        status, head, body = self._forward(path, headers)
        parts = urlsplit(path)
        endpoint = parts.path.rsplit("/", 1)[-1]
        self.requests[endpoint] += 1
        rewrite = self.rewrite
        if status == 200 and rewrite is not None:
            body = json.dumps(rewrite(endpoint, dict(parse_qsl(parts.query)), json.loads(body))).encode()
        return status, head, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                asked = {name: value for name, value in self.headers.items() if name.lower().startswith("x-mbx")}
                status, head, body = proxy._answer(self.path, asked)
                self.send_response(status)
                for name in PASSED_HEADERS:
                    value = next((v for k, v in head.items() if k.lower() == name.lower()), None)
                    if value is not None:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:  # quiet: the test output is for the test
                pass

        return Handler


class TextServer(LocalServer):
    """A real HTTP server answering every GET with 200 and a page of text: a URL that is not Binance."""

    def __init__(self, text: str = "<html><body>It works!</body></html>") -> None:
        page = text.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *_: object) -> None:
                pass

        super().__init__(Handler)
