"""Binance's REST request-weight limit, per client IP, in fixed one-minute windows.

Each response carries the running weight of the current minute in ``X-MBX-USED-WEIGHT-1M``. Past the
limit the answer is 429 with ``Retry-After`` (seconds to the next window). A client that keeps
sending while told to wait collects strikes; at the third it is banned with 418, for two minutes
the first time and twice as long each time after, as Binance escalates bans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from include.binance.protocol import IP_BAN_FIRST_SECONDS

STRIKES_BEFORE_BAN = 3  # Binance does not say how many; the sandbox bans at the third


@dataclass
class _ClientState:
    window: int = -1
    used: int = 0
    limited: bool = False
    strikes: int = 0
    banned_until: float = 0.0
    bans: int = 0


@dataclass(frozen=True)
class Verdict:
    status: int  # 200 to go ahead, 429 or 418 to refuse
    used: int
    retry_after: int = 0
    banned_until_ms: int = 0


class WeightLimiter:
    def __init__(self, limit: int, window_seconds: float = 60.0) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._clients: dict[str, _ClientState] = {}
        self.counts = {"429": 0, "418": 0}

    def charge(self, client: str, weight: int, now: float) -> Verdict:
        state = self._clients.setdefault(client, _ClientState())
        window = int(now // self.window_seconds)
        if window != state.window:
            state.window, state.used, state.limited, state.strikes = window, 0, False, 0
        if now < state.banned_until:
            self.counts["418"] += 1
            return Verdict(418, state.used, math.ceil(state.banned_until - now), int(state.banned_until * 1000))
        state.used += weight
        if state.used <= self.limit:
            return Verdict(200, state.used)
        retry_after = math.ceil((window + 1) * self.window_seconds - now)
        if state.limited:
            state.strikes += 1
            if state.strikes >= STRIKES_BEFORE_BAN:
                state.banned_until = now + IP_BAN_FIRST_SECONDS * 2**state.bans
                state.bans += 1
                self.counts["418"] += 1
                return Verdict(418, state.used, math.ceil(state.banned_until - now), int(state.banned_until * 1000))
        state.limited = True
        self.counts["429"] += 1
        return Verdict(429, state.used, retry_after)
