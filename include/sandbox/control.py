"""Binance's JSON control messages on a market-stream connection, with Binance's exact replies.

``SUBSCRIBE`` and ``UNSUBSCRIBE`` answer ``{"result": null, "id": ...}``, ``LIST_SUBSCRIPTIONS`` the
list, ``SET_PROPERTY``/``GET_PROPERTY`` the ``combined`` property; anything else an error object
``{"code": ..., "msg": ..., "id": ...}``. The connection stays open after an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from include.binance.protocol import (
    REQUEST_ID_BITS,
    REQUEST_ID_TEXT_PATTERN,
    WS_ERROR_INVALID_JSON,
    WS_ERROR_INVALID_REQUEST,
    WS_ERROR_INVALID_VALUE_TYPE,
    WS_ERROR_UNKNOWN_PROPERTY,
)
from include.sandbox.streams import valid_stream_name

Reply = dict[str, object]


class Subscriber(Protocol):
    """What a control message can change on a connection."""

    streams: list[str]
    combined: bool


def _error(code: int, msg: str, request_id: object) -> Reply:
    return {"code": code, "msg": msg, "id": request_id}


def _valid_request_id(value: object) -> bool:
    """Binance accepts a 64-bit signed integer, an alphanumeric string of at most 36, or null."""
    if value is None:
        return True
    if isinstance(value, str):
        return REQUEST_ID_TEXT_PATTERN.match(value) is not None
    bound = 2 ** (REQUEST_ID_BITS - 1)
    return isinstance(value, int) and not isinstance(value, bool) and -bound <= value < bound


def _parse(text: str) -> tuple[dict[str, Any], None] | tuple[None, Reply]:
    """The request object, or the error reply for a message that is not one."""
    try:
        request = json.loads(text)
    except json.JSONDecodeError as error:
        msg = f"Invalid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        return None, {"code": WS_ERROR_INVALID_JSON, "msg": msg}
    if not isinstance(request, dict):
        return None, {"code": WS_ERROR_INVALID_REQUEST, "msg": "Invalid request: expected an object"}
    if not _valid_request_id(request.get("id")):
        return None, _error(WS_ERROR_INVALID_REQUEST, "Invalid request: request ID must be an unsigned integer", None)
    return request, None


def _stream_names(params: object) -> list[str] | None:
    if isinstance(params, list) and all(isinstance(p, str) and valid_stream_name(p) for p in params):
        return params
    return None


def _subscribe(conn: Subscriber, params: object, request_id: object, max_streams: int) -> Reply:
    names = _stream_names(params)
    if names is None:
        return _error(WS_ERROR_INVALID_REQUEST, "Invalid request: invalid stream name", request_id)
    added = [name for name in dict.fromkeys(names) if name not in conn.streams]
    if len(conn.streams) + len(added) > max_streams:
        return _error(WS_ERROR_INVALID_REQUEST, "Invalid request: too many streams", request_id)
    conn.streams = conn.streams + added
    return {"result": None, "id": request_id}


def _unsubscribe(conn: Subscriber, params: object, request_id: object, max_streams: int) -> Reply:
    names = _stream_names(params)
    if names is None:
        return _error(WS_ERROR_INVALID_REQUEST, "Invalid request: invalid stream name", request_id)
    conn.streams = [name for name in conn.streams if name not in names]
    return {"result": None, "id": request_id}


def _list_subscriptions(conn: Subscriber, params: object, request_id: object, max_streams: int) -> Reply:
    return {"result": list(conn.streams), "id": request_id}


def _get_property(conn: Subscriber, params: object, request_id: object, max_streams: int) -> Reply:
    if not isinstance(params, list) or params[:1] != ["combined"]:
        return _error(WS_ERROR_UNKNOWN_PROPERTY, "Unknown property", request_id)
    return {"result": conn.combined, "id": request_id}


def _set_property(conn: Subscriber, params: object, request_id: object, max_streams: int) -> Reply:
    if not isinstance(params, list) or params[:1] != ["combined"]:
        return _error(WS_ERROR_UNKNOWN_PROPERTY, "Unknown property", request_id)
    if len(params) != 2 or not isinstance(params[1], bool):
        return _error(WS_ERROR_INVALID_VALUE_TYPE, "Invalid value type: expected Boolean", request_id)
    conn.combined = params[1]
    return {"result": None, "id": request_id}


_METHODS: dict[str, Callable[[Subscriber, object, object, int], Reply]] = {
    "SUBSCRIBE": _subscribe,
    "UNSUBSCRIBE": _unsubscribe,
    "LIST_SUBSCRIPTIONS": _list_subscriptions,
    "SET_PROPERTY": _set_property,
    "GET_PROPERTY": _get_property,
}


def control_reply(conn: Subscriber, text: str, max_streams: int) -> Reply:
    """Apply one control message to ``conn`` and return Binance's reply to it."""
    request, refusal = _parse(text)
    if request is None:
        return refusal
    request_id, method = request.get("id"), request.get("method")
    handler = _METHODS.get(method) if isinstance(method, str) else None
    if handler is None:
        expected = ", ".join(_METHODS)
        msg = f"Invalid request: unknown variant {method!r}, expected one of {expected}"
        return _error(WS_ERROR_INVALID_REQUEST, msg, request_id)
    return handler(conn, request.get("params", []), request_id, max_streams)
