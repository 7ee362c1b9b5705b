"""The sandbox exchange as an aiohttp application: REST, WebSocket and ``/admin`` on one port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from aiohttp import web

from include.sandbox.config import SandboxConfig
from include.sandbox.exchange import Exchange
from include.sandbox.http_errors import binance_errors
from include.sandbox.periodic import PeriodicStreams
from include.sandbox.rest import ENDPOINTS, make_handler
from include.sandbox.rest_tickers import TICKER_ENDPOINTS
from include.sandbox.ws import StreamHub

log = logging.getLogger(__name__)
TICK_SECONDS = 0.01
# Room in the request line for 1024 streams in a combined-stream URL (aiohttp's default is 8190 bytes).
MAX_REQUEST_LINE = 64 * 1024
EXCHANGE_KEY = web.AppKey("exchange", Exchange)
HUB_KEY = web.AppKey("hub", StreamHub)


async def _admin(request: web.Request) -> web.Response:
    """GET: settings, fault record and last trade per symbol. POST: change fault settings.

    It ticks first, like the REST handlers: the last ids are those of the exchange's clock now,
    not of the last background tick (a test that stops the clock reads the final ids here).
    """
    exchange = request.app[EXCHANGE_KEY]
    exchange.tick()
    if request.method == "POST":
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object of fault settings")
            exchange.faults.update(changes)
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            return web.json_response({"error": str(error)}, status=400)
    hub = request.app[HUB_KEY]
    return web.json_response(
        {
            "faults": exchange.faults.as_dict(),
            "record": exchange.record.as_dict(),
            "rest": {"weight_limit": exchange.limiter.limit, **exchange.limiter.counts},
            "connections": len(hub.connections),
            "symbols": {
                symbol: {
                    "trades": len(source.store),
                    "first_id": source.store.ids[0] if len(source.store) else None,
                    "last_id": source.store.ids[-1] if len(source.store) else None,
                }
                for symbol, source in exchange.sources.items()
            },
        },
        dumps=lambda body: json.dumps(body, separators=(",", ":")),
    )


def build_app(config: SandboxConfig) -> web.Application:
    exchange = Exchange(config)
    hub = StreamHub(exchange)
    app = web.Application(middlewares=[binance_errors])
    app[EXCHANGE_KEY] = exchange
    app[HUB_KEY] = hub
    app.router.add_get("/api/v3/{endpoint:.+}", make_handler(exchange, {**ENDPOINTS, **TICKER_ENDPOINTS}))
    app.router.add_get("/ws", hub.handle)
    app.router.add_get("/ws/{streams:.*}", hub.handle)
    app.router.add_get("/stream", hub.handle)
    app.router.add_route("*", "/admin", _admin)

    async def background(app: web.Application) -> AsyncIterator[None]:
        async def tick_forever() -> None:
            while True:
                exchange.tick()
                await asyncio.sleep(TICK_SECONDS)

        periodic = PeriodicStreams(exchange, hub)
        tasks = [
            asyncio.create_task(tick_forever()),
            asyncio.create_task(hub.maintain()),
            asyncio.create_task(periodic.run()),
            asyncio.create_task(hub.book_feeds.run()),
        ]
        yield
        for task in tasks:
            task.cancel()

    async def on_shutdown(app: web.Application) -> None:
        await hub.shutdown()

    app.cleanup_ctx.append(background)
    app.on_shutdown.append(on_shutdown)
    return app


@dataclass
class RunningSandbox:
    """A sandbox serving in a background thread: for tests and for the benchmark."""

    config: SandboxConfig
    app: web.Application
    port: int

    @property
    def rest_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    @property
    def exchange(self) -> Exchange:
        return self.app[EXCHANGE_KEY]

    @property
    def hub(self) -> StreamHub:
        return self.app[HUB_KEY]


@contextlib.contextmanager
def serve_in_thread(config: SandboxConfig) -> Iterator[RunningSandbox]:
    """Serve ``config`` on its host and port (0 picks a free one) until the block ends."""
    loop = asyncio.new_event_loop()
    app = build_app(config)
    runner = web.AppRunner(app, handle_signals=False, max_line_size=MAX_REQUEST_LINE)
    started = threading.Event()
    port: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, config.host, config.port)
        loop.run_until_complete(site.start())
        port.append(runner.addresses[0][1])
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="sandbox", daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the sandbox did not start within 30 s")
    try:
        yield RunningSandbox(config, app, port[0])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


class SandboxStartError(RuntimeError):
    """The sandbox could not start serving, e.g. its port is taken."""


def run(config: SandboxConfig) -> None:
    """Serve until SIGINT or SIGTERM; clients get ``serverShutdown`` before the sockets close."""
    app = build_app(config)

    async def main() -> None:
        runner = web.AppRunner(app, handle_signals=False, max_line_size=MAX_REQUEST_LINE)
        await runner.setup()
        try:
            await web.TCPSite(runner, config.host, config.port).start()
        except OSError as error:
            await runner.cleanup()
            raise SandboxStartError(f"cannot listen on {config.host}:{config.port}: {error.strerror}") from error
        base = f"{config.host}:{runner.addresses[0][1]}"  # the real port, also when --port 0 chose one
        print(f"sandbox exchange: REST http://{base}/api/v3  WS ws://{base}/ws  admin http://{base}/admin", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: sending serverShutdown to %d connections", len(app[HUB_KEY].connections))
        await runner.cleanup()

    asyncio.run(main())
