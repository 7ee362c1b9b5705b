"""The stream benchmark's exchange: Binance trade frames, encoded up front, replayed from memory.

The sandbox makes its market, encodes each event and frames it while it streams, all on one core:
a client that is faster than that measures the sandbox, not itself. This sender does every
per-frame step before it listens: the combined-stream trade events (the sandbox's own encoder, so
the bytes are the sandbox's and Binance's, µs times as with ``timeUnit=MICROSECOND``) with their
WebSocket headers, joined into large chunks. Serving a connection is then writing those chunks to
the socket, paced only by TCP flow control, so what it reports as its own rate is whatever the
client let it send; its CPU time shows how much headroom it had.

It answers only the URL the real ``StreamWorker`` asks for (``/stream?streams=btcusdt@trade
&timeUnit=MICROSECOND``), with a real WebSocket handshake and close (the ``websockets`` Sans-I/O
protocol), and serves ``--connections`` connections one after the other, each getting every frame.

    python -m bench.sender --trades N --first-id ID [--connections C]

prints ``{"port": P}`` once it listens, then, per connection, ``{"frames": ..., "seconds": ...,
"cpu_seconds": ...}`` (``seconds`` from the first byte to the last one handed to the kernel).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from websockets.http11 import Request
from websockets.server import ServerProtocol

from bench.stream_client import SYMBOL
from include.sandbox.store import Trade
from include.sandbox.ws import text_frame, trade_event

STREAM = f"{SYMBOL.lower()}@trade"
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
SPACING_US = 100  # 10,000 trades per second of market time: a busy BTCUSDT
FRAMES_PER_CHUNK = 1000  # about 170 kB per write
WRITE_BUFFER_HIGH = 4 << 20
LIVENESS_SECONDS = 600.0  # no client, or a client that never closes, for this long: give up


def trade_frames(count: int, first_id: int) -> list[bytes]:
    """``count`` WebSocket frames of combined-stream trades, ids from ``first_id``, in chunks."""
    chunks, frames = [], []
    for trade_id in range(first_id, first_id + count):
        n = trade_id - first_id
        price = (6_000_000 + n % 1000) * 1_000_000  # 60,000.00 .. 60,009.99 in 1e-8 units
        qty = (1 + n % 977) * 1000  # 0.00001 .. 0.00977
        trade = Trade(trade_id, START_US + n * SPACING_US, price, qty, price * qty // 10**8, n % 3 != 0)
        event = trade_event(trade, SYMBOL, trade.time_us + 1000, microseconds=True)
        frames.append(text_frame(f'{{"stream":"{STREAM}","data":{event}}}'))
        if len(frames) == FRAMES_PER_CHUNK:
            chunks.append(b"".join(frames))
            frames = []
    if frames:
        chunks.append(b"".join(frames))
    return chunks


def is_stream_request(path: str) -> bool:
    """The one URL the benchmark's clients use, as the sandbox and Binance spell it."""
    url = urlsplit(path)
    query = parse_qs(url.query)
    return url.path == "/stream" and query.get("streams") == [STREAM] and query.get("timeUnit") == ["MICROSECOND"]


@dataclass
class Sent:
    frames: int
    seconds: float
    cpu_seconds: float


class Sender:
    def __init__(self, chunks: list[bytes], frames: int, connections: int) -> None:
        self.chunks = chunks
        self.frames = frames
        self.left = connections
        self.done = asyncio.Event()
        self.busy = asyncio.Lock()  # one connection at a time: each gets the whole core

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self.busy:
            try:
                protocol = ServerProtocol(max_size=1 << 20)
                if await self._handshake(protocol, reader, writer):
                    sent = await self._send(writer)
                    await self._close(protocol, reader, writer)
                    print(json.dumps(sent.__dict__), flush=True)
                    self.left -= 1
            finally:
                writer.close()
                if self.left <= 0:
                    self.done.set()

    async def _handshake(
        self, protocol: ServerProtocol, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        while not (events := protocol.events_received()):
            data = await reader.read(65536)
            if not data:
                return False
            protocol.receive_data(data)
        request = events[0]
        assert isinstance(request, Request)
        if is_stream_request(request.path):
            response = protocol.accept(request)
        else:
            response = protocol.reject(400, f"this sender only serves /stream?streams={STREAM}&timeUnit=MICROSECOND")
        protocol.send_response(response)
        writer.write(b"".join(protocol.data_to_send()))
        await writer.drain()
        return response.status_code == 101

    async def _send(self, writer: asyncio.StreamWriter) -> Sent:
        transport = writer.transport
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        began, cpu = time.perf_counter(), time.process_time()
        for chunk in self.chunks:
            writer.write(chunk)
            await writer.drain()
        transport.set_write_buffer_limits(high=0)  # drain() now waits until the kernel has every byte
        await writer.drain()
        return Sent(self.frames, time.perf_counter() - began, time.process_time() - cpu)

    async def _close(
        self, protocol: ServerProtocol, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer the client's pings and its close frame until it hangs up."""
        while data := await reader.read(65536):
            protocol.receive_data(data)
            protocol.events_received()
            for out in protocol.data_to_send():
                if out:
                    writer.write(out)
                elif writer.can_write_eof():
                    writer.write_eof()
            await writer.drain()


async def run(count: int, first_id: int, connections: int) -> int:
    chunks = trade_frames(count, first_id)
    sender = Sender(chunks, count, connections)
    server = await asyncio.start_server(sender.serve, "127.0.0.1", 0)
    async with server:
        print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
        try:
            await asyncio.wait_for(sender.done.wait(), LIVENESS_SECONDS)
        except TimeoutError:
            print(f"sender: {sender.left} connection(s) not served within {LIVENESS_SECONDS:.0f} s", file=sys.stderr)
            return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, required=True)
    parser.add_argument("--first-id", type=int, required=True)
    parser.add_argument("--connections", type=int, default=1)
    args = parser.parse_args()
    return asyncio.run(run(args.trades, args.first_id, args.connections))


if __name__ == "__main__":
    sys.exit(main())
