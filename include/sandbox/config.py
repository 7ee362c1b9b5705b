"""Settings of one sandbox exchange, as given on the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from include.sandbox.faults import FaultSettings


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 9100
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
    rate: float = 20.0  # average trades per second per symbol
    seed: int = 42
    history_seconds: float = 0.0  # synthetic trades made up front, ending now
    first_trade_id: int = 1
    holes: dict[str, frozenset[int]] = field(default_factory=dict)  # ids that never exist
    replay: tuple[Path, ...] = ()
    replay_mode: str = "historical"
    speed: float = 1.0
    replay_delay_seconds: float = 0.0  # live replay starts this long after the sandbox, so clients can connect
    lifetime_seconds: float = 24 * 3600.0
    ping_interval: float = 20.0
    pong_timeout: float = 60.0
    weight_limit: int = 6000
    weight_window_seconds: float = 60.0
    max_streams: int = 1024
    max_incoming_per_second: int = 5
    max_connections: int = 0  # 0 is no limit
    faults: FaultSettings = field(default_factory=FaultSettings)
