"""What ``make up`` runs on the embedded defaults: the services of the product, in start order."""

from __future__ import annotations

import sys

from include.config import Settings, load_settings
from include.supervisor import Service, supervise


def services(settings: Settings, sandbox_port: int, sandbox_rate: float) -> list[Service]:
    python = sys.executable
    started: list[Service] = []
    if settings.exchange == "sandbox":
        base = f"127.0.0.1:{sandbox_port}"
        started.append(
            Service(
                name="sandbox exchange",
                argv=[
                    python,
                    "-m",
                    "include.cli",
                    "sandbox",
                    "--port",
                    str(sandbox_port),
                    "--symbols",
                    ",".join(settings.symbols),
                    "--rate",
                    str(sandbox_rate),
                    "--history",
                    "3600",
                ],
                health_url=f"http://{base}/api/v3/ping",
                urls={
                    "sandbox REST": f"http://{base}/api/v3/klines?symbol={settings.symbols[0]}&interval=1m",
                    "sandbox WebSocket": f"ws://{base}/stream?streams={settings.symbols[0].lower()}@trade",
                    "sandbox admin (faults)": f"http://{base}/admin",
                },
            )
        )
    return started


def run(sandbox_port: int, sandbox_rate: float) -> int:
    settings = load_settings()
    return supervise(services(settings, sandbox_port, sandbox_rate))
