"""The sandbox streams benchmark's raw WebSocket client (``bench/sandbox_streams_client.py``): every
text frame whole and in order, whatever its length and however the reads cut it; a ping answered
with its payload; a stream's trades counted by symbol and id."""

from __future__ import annotations

import asyncio
from array import array

import pytest
from aiohttp import WSMsgType, web

from bench.sandbox_streams_client import TradeSocket, count_trades

# Each of the three length encodings (7 bits, 16, 64), and frames longer than one read.
TEXTS = ["x" * 5, "y" * 125, "z" * 126, "w" * 65_535, "v" * 65_536, "u" * 3_000_000, "t"]


async def exchange_frames() -> tuple[list[bytes], bytes]:
    pong = asyncio.get_running_loop().create_future()
    read = asyncio.Event()  # the client has every frame: the server may close (a close frame would end the read)

    async def serve(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False, compress=False)
        await ws.prepare(request)
        await ws.ping(b"are you there")
        for text in TEXTS:
            await ws.send_str(text)
        message = await ws.receive()
        pong.set_result(message.data if message.type == WSMsgType.PONG else repr(message).encode())
        await read.wait()
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/ws/{streams:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        client = await TradeSocket.connect(runner.addresses[0][1], "/ws/btcusdt@trade")
        received: list[bytes] = []
        while len(received) < len(TEXTS):
            received += await client.texts()
        answer = await asyncio.wait_for(pong, 30)
        read.set()
        client.close()
    finally:
        await runner.cleanup()
    return received, answer


def test_text_frames_arrive_whole_and_a_ping_is_answered() -> None:
    received, pong = asyncio.run(exchange_frames())
    assert [text.decode() for text in received] == TEXTS
    assert pong == b"are you there"


def test_trades_are_counted_by_symbol_and_id_and_anything_else_is_refused() -> None:
    ids: dict[str, array[int]] = {"BTCUSDT": array("q"), "ETHUSDT": array("q")}
    frames = [
        b'{"e":"trade","E":1,"s":"BTCUSDT","t":41,"p":"1.00000000","q":"1.00000000","T":1,"m":true,"M":true}',
        b'{"e":"trade","E":1,"s":"ETHUSDT","t":7,"p":"1.00000000","q":"1.00000000","T":1,"m":false,"M":true}',
        b'{"e":"trade","E":1,"s":"BTCUSDT","t":42,"p":"1.00000000","q":"1.00000000","T":1,"m":true,"M":true}',
    ]
    assert count_trades(frames, ids) == 3
    assert {symbol: list(received) for symbol, received in ids.items()} == {"BTCUSDT": [41, 42], "ETHUSDT": [7]}
    with pytest.raises(RuntimeError, match="1 of 2 frames were not trades"):
        count_trades([frames[0], b'{"e":"serverShutdown","E":1}'], ids)
