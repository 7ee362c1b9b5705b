"""Binance's JSON error body for any path the sandbox does not serve, or a method it does not take.

Binance's own answer to an unknown path is an empty 404 and is not documented; clients parse error
bodies as JSON, so the sandbox answers with the closest documented error, -1020 "This operation is
not supported.", with status 404 for an unknown path and 405 for a method the path does not take.
Never aiohttp's HTML pages.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from include.binance.protocol import ERROR_UNSUPPORTED_OPERATION

UNSUPPORTED_MESSAGE = "This operation is not supported."


def error_response(status: int) -> web.Response:
    body = {"code": ERROR_UNSUPPORTED_OPERATION, "msg": UNSUPPORTED_MESSAGE}
    return web.Response(status=status, text=json.dumps(body, separators=(",", ":")), content_type="application/json")


@web.middleware
async def binance_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed:  # a subclass of neither, but check it before the wider 404
        return error_response(405)
    except web.HTTPNotFound:
        return error_response(404)
