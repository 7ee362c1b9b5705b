"""Market rules evaluated on closed, complete candles: which candles fire which rule, exactly.

A rule fires when its condition **becomes** true on a candle: a price cross is that by nature (the
close before the level, this close at or past it); a percent move or a volume spike fires on the
first candle it holds, not again while it keeps holding. Every candle a condition reads (the candle,
those of its window or trailing average, and the one before for the edge) must be closed, complete
(``is_complete``: no trade id missing) and present. Otherwise the condition is not known, and nothing
fires: a candle over a gap never fires, and once the repair completes it the next evaluation reads it
again and fires if it crosses.

Everything here is exact decimal arithmetic (``Decimal``): ``(close - open) * 100 >= percent * open``,
never a float and never a division before a comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import pairwise

from include.alerts.model import MARKET, Alert, alert_id
from include.alerts.rules import Rule
from include.timeutil import to_us

PERCENT_PLACES = Decimal("0.000001")  # a percent move is shown to 6 decimals (the decision is exact)


@dataclass(frozen=True)
class Candle:
    """The fields of a mart row that the rules read."""

    open_time: datetime
    close_time: datetime
    open: Decimal | None
    close: Decimal | None
    volume: Decimal
    is_closed: bool
    is_complete: bool

    @property
    def known(self) -> bool:
        return self.is_closed and self.is_complete and self.open is not None and self.close is not None


def evaluate_rule(rule: Rule, candles: Sequence[Candle], since: datetime) -> list[Alert]:
    """The alerts ``rule`` fires on ``candles`` (one symbol and interval, oldest first): one per candle
    closing at or after ``since`` whose condition became true there."""
    fired = []
    for index, candle in enumerate(candles):
        if candle.close_time < since or not _fires(rule, candles, index):
            continue
        fired.append(_alert(rule, candle, _value(rule, candles, index)))
    return fired


def _fires(rule: Rule, candles: Sequence[Candle], index: int) -> bool:
    if rule.type == "price_cross":
        return _holds(rule, candles, index) is True
    # A level condition: true here, and known to be false on the candle before.
    return _holds(rule, candles, index) is True and _holds(rule, candles, index - 1) is False


def _holds(rule: Rule, candles: Sequence[Candle], index: int) -> bool | None:
    """Whether the rule's condition holds on candle ``index``; None when a candle it reads is not known."""
    first = index - {"price_cross": 1, "percent_move": rule.window - 1, "volume_spike": rule.trailing}[rule.type]
    if first < 0 or not _known_run(candles[first : index + 1], rule.interval.length):
        return None
    candle = candles[index]
    if rule.type == "price_cross":
        return _crosses(rule, candles[index - 1].close, candle.close)
    if rule.type == "percent_move":
        return _moved(rule, candles[first].open, candle.close)
    return _spiked(rule, [before.volume for before in candles[first:index]], candle.volume)


def _known_run(run: Sequence[Candle], length: timedelta) -> bool:
    """Every candle known, each the bucket right after the one before it (no row missing)."""
    if not all(candle.known for candle in run):
        return False
    return all(later.open_time - earlier.open_time == length for earlier, later in pairwise(run))


def _crosses(rule: Rule, before: Decimal | None, after: Decimal | None) -> bool:
    assert rule.level is not None
    assert before is not None
    assert after is not None
    up = before < rule.level <= after
    down = before > rule.level >= after
    return {"up": up, "down": down, "both": up or down}[rule.direction]


def _moved(rule: Rule, start: Decimal | None, end: Decimal | None) -> bool:
    assert rule.percent is not None
    assert start is not None
    assert end is not None
    if start <= 0:
        return False
    change, threshold = (end - start) * 100, rule.percent * start
    up, down = change >= threshold, -change >= threshold
    return {"up": up, "down": down, "either": up or down}[rule.direction]


def _spiked(rule: Rule, trailing: Sequence[Decimal], volume: Decimal) -> bool:
    assert rule.factor is not None
    total = sum(trailing, Decimal(0))
    # volume >= factor * (total / n), as volume * n >= factor * total: no division
    return total > 0 and volume * len(trailing) >= rule.factor * total


def _value(rule: Rule, candles: Sequence[Candle], index: int) -> Decimal:
    """The figure the alert reports: the close (a cross), the move in percent, or the volume."""
    candle = candles[index]
    assert candle.close is not None
    if rule.type == "price_cross":
        return candle.close
    if rule.type == "percent_move":
        start = candles[index - rule.window + 1].open
        assert start is not None
        return ((candle.close - start) * 100 / start).quantize(PERCENT_PLACES, ROUND_HALF_EVEN)
    return candle.volume


def _alert(rule: Rule, candle: Candle, value: Decimal) -> Alert:
    unit = {"price_cross": "close", "percent_move": "move %", "volume_spike": "volume"}[rule.type]
    return Alert(
        alert_id=alert_id("market", rule.fingerprint, rule.symbol, rule.interval.name, to_us(candle.open_time)),
        kind=MARKET,
        rule_id=rule.rule_id,
        subject=f"{rule.symbol} {rule.interval.name}",
        message=f"{rule.rule_id}: {rule.describe()}; {unit} {format(value, 'f')} on the candle of "
        f"{candle.open_time.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
        event_time=candle.close_time,
        symbol=rule.symbol,
        interval=rule.interval.name,
        open_time=candle.open_time,
        value=value,
    )
