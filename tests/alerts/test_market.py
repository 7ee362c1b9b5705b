"""Market rules on candles: each fires where its condition becomes true, once, exactly; never on a
candle that is not closed and complete, or whose context is not; and once it is repaired, it does."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from include.alerts.market import Candle, evaluate_rule
from include.alerts.rules import parse_rules

T0 = datetime(2026, 12, 1, 10, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def rule(text: str):
    parsed = parse_rules(f"rules:\n  - {{{text}}}\n", "test", ("BTCUSDT",))
    assert parsed.errors == []
    return parsed.rules[0]


def minutes(closes: list[str], volumes: list[str] | None = None) -> list[Candle]:
    """1m candles, each opening at the close before it (the first at its own close)."""
    candles, previous = [], Decimal(closes[0])
    for index, close in enumerate(closes):
        volume = Decimal(volumes[index]) if volumes else Decimal(1)
        open_time = T0 + index * MINUTE
        candles.append(
            Candle(
                open_time, open_time + MINUTE - timedelta(milliseconds=1), previous, Decimal(close), volume, True, True
            )
        )
        previous = Decimal(close)
    return candles


def fired_minutes(rule_, candles, since=T0):
    return [(alert.open_time - T0) // MINUTE for alert in evaluate_rule(rule_, candles, since)]


CROSS_UP = "id: up, type: price_cross, symbol: BTCUSDT, interval: 1m, level: '100.5', direction: up"


def test_a_price_cross_fires_on_the_candle_that_crosses_and_only_in_its_direction():
    closes = ["100", "100.49999999", "100.5", "101", "100", "100.6"]
    assert fired_minutes(rule(CROSS_UP), minutes(closes)) == [2, 5]
    down = rule(CROSS_UP.replace("direction: up", "direction: down").replace("id: up", "id: down"))
    assert fired_minutes(down, minutes(closes)) == [4]
    both = rule(CROSS_UP.replace("direction: up", "direction: both").replace("id: up", "id: both"))
    assert fired_minutes(both, minutes(closes)) == [2, 4, 5]


def test_a_cross_by_the_smallest_unit_is_seen_and_the_value_is_the_exact_close():
    alerts = evaluate_rule(rule(CROSS_UP), minutes(["100.49999999", "100.50000000"]), T0)
    assert [alert.value for alert in alerts] == [Decimal("100.50000000")]


def test_a_percent_move_fires_when_it_starts_to_hold_not_while_it_holds():
    move = rule("id: mv, type: percent_move, symbol: BTCUSDT, interval: 1m, window: 2m, percent: 5, direction: up")
    # window of 2: from the open of the candle before to this close
    closes = ["100", "100", "105", "111", "111", "111", "100", "100", "105"]
    assert fired_minutes(move, minutes(closes)) == [2, 8]
    alerts = evaluate_rule(move, minutes(closes), T0)
    assert alerts[0].value == Decimal("5.000000")


def test_a_percent_move_just_below_the_threshold_does_not_fire():
    move = rule("id: mv, type: percent_move, symbol: BTCUSDT, interval: 1m, window: 1m, percent: 5")
    assert fired_minutes(move, minutes(["100", "100", "104.99999999"])) == []


def test_a_volume_spike_fires_against_the_trailing_average():
    spike = rule("id: vs, type: volume_spike, symbol: BTCUSDT, interval: 1m, trailing: 3, factor: 3")
    closes = ["1"] * 10
    # minute 4: 6 >= 3 x (1 + 2 + 3) / 3; minute 9: 3 >= 3 x (1 + 1 + 1) / 3
    assert fired_minutes(spike, minutes(closes, ["1", "1", "2", "3", "6", "6", "1", "1", "1", "3"])) == [4, 9]
    near_miss = ["1", "1", "2", "3", "5.99999999", "1", "1", "1", "1", "2.99999999"]
    assert fired_minutes(spike, minutes(closes, near_miss)) == []


def test_an_incomplete_candle_never_fires_and_fires_once_repaired():
    candles = minutes(["100", "100", "101", "101"])
    gap = [*candles[:2], replace(candles[2], is_complete=False), candles[3]]
    assert fired_minutes(rule(CROSS_UP), gap) == []
    assert fired_minutes(rule(CROSS_UP), candles) == [2]


def test_a_condition_that_reads_an_incomplete_or_missing_candle_does_not_fire():
    candles = minutes(["100", "100", "101"])
    before_incomplete = [candles[0], replace(candles[1], is_complete=False), candles[2]]
    assert fired_minutes(rule(CROSS_UP), before_incomplete) == []
    missing_row = [candles[0], candles[2]]  # the minute before the cross is not in the mart
    assert fired_minutes(rule(CROSS_UP), missing_row) == []
    forming = [*candles[:2], replace(candles[2], is_closed=False)]
    assert fired_minutes(rule(CROSS_UP), forming) == []


def test_candles_closed_before_since_do_not_fire_and_ids_are_stable():
    candles = minutes(["100", "101", "100", "101"])
    assert fired_minutes(rule(CROSS_UP), candles, since=T0 + 2 * MINUTE) == [3]
    first = evaluate_rule(rule(CROSS_UP), candles, T0)
    again = evaluate_rule(rule(CROSS_UP), candles, T0)
    assert [a.alert_id for a in first] == [a.alert_id for a in again]
    assert len({a.alert_id for a in first}) == 2


def test_the_message_names_the_candle_in_utc_whatever_zone_the_warehouse_gives_it_in():
    new_york = ZoneInfo("America/New_York")
    candles = [replace(c, open_time=c.open_time.astimezone(new_york)) for c in minutes(["100", "101"])]
    (alert,) = evaluate_rule(rule(CROSS_UP), candles, T0)
    assert alert.message.endswith("on the candle of 2026-12-01 10:01 UTC")
