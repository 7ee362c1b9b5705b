"""What an alert is, once: the row of ``marts.alerts`` that the evaluation stores, the delivery sends
and the dashboard shows.

An alert's id is stable: a hash of what it is about (for a market alert, the rule as it was asked and
the candle; for a pipeline alert, the check and the evidence it began with). Evaluating again, after a
re-run or a backfill that rebuilt the same candle, makes the same id, which is stored and delivered
once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

MARKET, PIPELINE = "market", "pipeline"
FIRED, RESOLVED = "fired", "resolved"  # the events a channel is told about (a market alert is fired only)


def alert_id(*identity: object) -> str:
    """The stable id of the alert that ``identity`` describes: 24 hex digits."""
    return hashlib.sha256("|".join(str(part) for part in identity).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Alert:
    """One alert. ``event_time``: the close of the candle that fired it (market), or when the incident
    began, as its evidence says (pipeline). ``resolved_at`` is set when a pipeline incident ends."""

    alert_id: str
    kind: str  # MARKET or PIPELINE
    rule_id: str  # the market rule's id, or the pipeline check's name (e.g. stale_symbol)
    subject: str  # what it is about: "BTCUSDT 1m", "warehouse.load", "shard-0", ...
    message: str
    event_time: datetime
    symbol: str | None = None
    interval: str | None = None
    open_time: datetime | None = None  # the candle's (market) or the first candle concerned (pipeline)
    value: Decimal | None = None  # the figure that fired it, exact
    fired_at: datetime | None = None  # when it was stored (None before it is)
    resolved_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        """A pipeline incident not resolved yet (a market alert is an event: never active)."""
        return self.kind == PIPELINE and self.resolved_at is None
