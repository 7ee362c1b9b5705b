"""The sandbox streams benchmark's client, in a process of its own: ``python -m bench.sandbox_streams_client``.

It reads the trade stream (``/ws/<s>@trade/...``) over a raw WebSocket of its own: a socket, the
handshake, and frames cut from large reads, each frame's symbol and id taken by one regular
expression over the batch. That costs the client a small part of what the sandbox spends on each
trade, so the sandbox, not the client, is the limit. With ``--others`` it also reads a combined
stream of the other streams (``/stream?streams=``) through ``websockets`` (their rate is small),
counting each stream's messages.

It prints ``open`` ``--warm-up`` seconds after the first trade arrives (the window starts: the
benchmark reads the sandbox's CPU time then; the ids are checked from the first trade on) and,
after ``--seconds``, one JSON line: per symbol the first id, the count and
whether the ids ran on by one with none missing and none twice; the trades; the window; the other
streams' messages by name.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import sys
import time
from array import array
from collections import Counter
from itertools import pairwise
from typing import Any

_TRADE = re.compile(rb'"s":"([A-Z0-9]+)","t":(\d+),')
_READ_SIZE = 1 << 20
_OPEN_SECONDS = 120.0  # the sandbox starts its replay within this long, or the run has failed
_TEXT, _CLOSE, _PING = 0x1, 0x8, 0x9


class TradeSocket:
    """A raw WebSocket client for a sandbox's raw trade stream (server frames: unmasked, unfragmented)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    @classmethod
    async def connect(cls, port: int, path: str) -> TradeSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"the sandbox refused {path}: {head.splitlines()[0].decode()}")
        return cls(reader, writer)

    async def texts(self) -> list[bytes]:
        """The text frames of the next read (perhaps none: a frame may end in a later read)."""
        chunk = await self.reader.read(_READ_SIZE)
        if not chunk:
            raise RuntimeError("the sandbox closed the trade stream")
        self.buffer += chunk
        texts, position = self._frames()
        self.buffer = self.buffer[position:]
        return texts

    def _frames(self) -> tuple[list[bytes], int]:
        buffer, position, end = self.buffer, 0, len(self.buffer)
        texts: list[bytes] = []
        while position + 2 <= end:
            size, head = buffer[position + 1], 2
            if size == 126:
                size, head = int.from_bytes(buffer[position + 2 : position + 4], "big"), 4
            elif size == 127:
                size, head = int.from_bytes(buffer[position + 2 : position + 10], "big"), 10
            if position + head + size > end:
                break
            opcode, payload = buffer[position] & 0x0F, buffer[position + head : position + head + size]
            if opcode == _TEXT:
                texts.append(payload)
            elif opcode == _PING:
                self._pong(payload)
            elif opcode == _CLOSE:
                raise RuntimeError(f"the sandbox closed the trade stream: {payload!r}")
            position += head + size
        return texts, position

    def _pong(self, payload: bytes) -> None:
        """A client's frames are masked (RFC 6455 5.3); pings carry a few bytes, at most 125."""
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.writer.write(bytes((0x8A, 0x80 | len(payload))) + mask + masked)

    def close(self) -> None:
        self.writer.close()


async def read_others(url: str, seen: Counter[str], window_open: asyncio.Event) -> None:
    """Count every message of the combined stream by its stream name, from the window's start."""
    from websockets.asyncio.client import connect

    async with connect(url, compression=None, max_size=1 << 22, max_queue=None) as ws:
        async for message in ws:
            if window_open.is_set():
                seen[json.loads(message)["stream"]] += 1


def ids_report(ids: array[int]) -> dict[str, Any]:
    """A symbol's ids as received: the first, how many, and whether each is the one before it plus one."""
    contiguous = all(later - earlier == 1 for earlier, later in pairwise(ids))
    return {"first": ids[0] if ids else None, "count": len(ids), "contiguous": contiguous}


def count_trades(texts: list[bytes], ids: dict[str, array[int]]) -> int:
    """Append each trade's id to its symbol's; every frame of the trade stream must be a trade."""
    found = _TRADE.findall(b"\n".join(texts))
    if len(found) != len(texts):
        raise RuntimeError(f"{len(texts) - len(found)} of {len(texts)} frames were not trades")
    for symbol, trade_id in found:
        ids[symbol.decode()].append(int(trade_id))
    return len(found)


async def run(port: int, symbols: list[str], seconds: float, warm_up: float, others: list[str]) -> dict[str, Any]:
    trades = await TradeSocket.connect(port, "/ws/" + "/".join(f"{symbol.lower()}@trade" for symbol in symbols))
    window_open, seen = asyncio.Event(), Counter[str]()
    reading = None
    if others:
        url = f"ws://127.0.0.1:{port}/stream?streams={'/'.join(others)}"
        reading = asyncio.create_task(read_others(url, seen, window_open))
    ids: dict[str, array[int]] = {symbol: array("q") for symbol in symbols}
    async with asyncio.timeout(_OPEN_SECONDS):
        texts = await trades.texts()
        while not texts:
            texts = await trades.texts()
    received = count_trades(texts, ids)  # the first trades: their ids are checked, from here on
    started = time.perf_counter()
    while time.perf_counter() - started < warm_up:  # what the sandbox does once is not its rate
        received += count_trades(await trades.texts(), ids)
    first, cpu = time.perf_counter(), time.process_time()
    window_open.set()
    print("open", flush=True)
    last = first
    while last - first < seconds:
        texts = await trades.texts()
        last = time.perf_counter()
        count_trades(texts, ids)
    window, cpu_seconds = last - first, time.process_time() - cpu
    trades.close()
    if reading is not None:
        if reading.done():
            reading.result()  # its error, if it failed
        reading.cancel()
    return {
        "seconds": window,
        "cpu_seconds": cpu_seconds,
        "trades": sum(len(symbol_ids) for symbol_ids in ids.values()) - received,
        "symbols": {symbol: ids_report(received) for symbol, received in ids.items()},
        "others": dict(seen),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--symbols", required=True, help="comma-separated")
    parser.add_argument("--seconds", type=float, required=True, help="how long the window lasts")
    parser.add_argument("--warm-up", type=float, default=0.0, help="seconds from the first trade to the window")
    parser.add_argument("--others", default="", help="other streams to read beside, comma-separated")
    arguments = parser.parse_args()
    others = [name for name in arguments.others.split(",") if name]
    symbols = arguments.symbols.split(",")
    figures = asyncio.run(run(arguments.port, symbols, arguments.seconds, arguments.warm_up, others))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    sys.exit(main())
