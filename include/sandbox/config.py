"""Settings of one sandbox exchange, as given on the command line.

The protocol limits default to Binance's own (``include.binance.protocol``); tests shorten them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from include.binance.protocol import (
    CONNECTION_LIFETIME_SECONDS,
    MAX_INCOMING_MESSAGES_PER_SECOND,
    MAX_STREAMS_PER_CONNECTION,
    PING_INTERVAL_SECONDS,
    PONG_TIMEOUT_SECONDS,
    WEIGHT_LIMIT_PER_MINUTE,
)
from include.sandbox.faults import FaultSettings


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 9100
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
    rate: float = 20.0  # average trades per second per symbol
    # Per symbol, its own average instead of ``rate``: a few busy symbols and many quiet ones, as on Binance.
    symbol_rates: dict[str, float] = field(default_factory=dict)
    seed: int = 42
    history_seconds: float = 0.0  # the synthetic market's trades of this past window, served from the start
    history_since_us: int | None = None  # or its trades from this moment on, when that is earlier
    first_trade_id: int = 1  # the id of the synthetic market's first trade, at its epoch
    holes: dict[str, frozenset[int]] = field(default_factory=dict)  # ids that never exist
    replay: tuple[Path, ...] = ()
    replay_mode: str = "historical"
    speed: float = 1.0
    replay_delay_seconds: float = 0.0  # live replay starts this long after the sandbox, so clients can connect
    lifetime_seconds: float = CONNECTION_LIFETIME_SECONDS
    ping_interval: float = PING_INTERVAL_SECONDS
    pong_timeout: float = PONG_TIMEOUT_SECONDS
    weight_limit: int = WEIGHT_LIMIT_PER_MINUTE
    weight_window_seconds: float = 60.0
    max_streams: int = MAX_STREAMS_PER_CONNECTION
    max_incoming_per_second: int = MAX_INCOMING_MESSAGES_PER_SECOND
    max_connections: int = 0  # 0 is no limit
    faults: FaultSettings = field(default_factory=FaultSettings)
