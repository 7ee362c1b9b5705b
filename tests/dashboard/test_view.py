"""dashboard/view.py: the URL query string as the page's view, parsed strictly and written back in full."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from dashboard.view import AUTO_CANDLES, DEFAULT_COLOURS, KEYS, MAX_CANDLES, MAX_SHOWN, View, parse_view

SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPETH")
DEFAULT = View(symbol="ETHUSDT")
A_VIEW = View(
    symbol="XRPETH",
    interval="4h",
    range="1w",
    bull="00ff00",
    bull_line="112233",
    bear="aa00bb",
    bear_line="445566",
    theme="light",
)
A_DATED_VIEW = View(symbol="BTCUSDT", interval="15m", start=date(2026, 11, 1), end=date(2026, 11, 24))


def test_no_query_is_the_default_view_with_the_default_symbol():
    assert parse_view({}, SYMBOLS, "ETHUSDT") == (DEFAULT, [])
    # A default symbol the marts do not hold gives way to their first one.
    assert parse_view({}, SYMBOLS, "DOGEUSDT") == (View(symbol="BTCUSDT"), [])


def test_query_names_every_choice_in_a_fixed_order():
    assert A_VIEW.query() == {
        "symbol": "XRPETH",
        "interval": "4h",
        "range": "1w",
        "bull": "00ff00",
        "bull_line": "112233",
        "bear": "aa00bb",
        "bear_line": "445566",
        "theme": "light",
    }
    assert list(A_VIEW.query()) == [key for key in KEYS if key not in ("start", "end")]
    # Dates replace the range button: the link must not carry both.
    assert A_DATED_VIEW.query() == {
        "symbol": "BTCUSDT",
        "interval": "15m",
        "start": "2026-11-01",
        "end": "2026-11-24",
        **DEFAULT_COLOURS,
        "theme": "dark",
    }


@pytest.mark.parametrize("view", [DEFAULT, A_VIEW, A_DATED_VIEW, View(symbol="ETHUSDT", range="max", theme="light")])
def test_a_view_survives_its_own_query(view):
    assert parse_view(view.query(), SYMBOLS, "ETHUSDT") == (view, [])


def test_colours_are_read_case_blind_and_kept_lower_case():
    view, notices = parse_view({"bull": "ABCDEF", "bear_line": "0A0b0C"}, SYMBOLS)
    assert (view.bull, view.bear_line, notices) == ("abcdef", "0a0b0c", [])


def test_a_repeated_key_counts_once_the_last_value():
    view, notices = parse_view({"symbol": ["BTCUSDT", "XRPETH"], "interval": ["1d"]}, SYMBOLS)
    assert (view.symbol, view.interval, notices) == ("XRPETH", "1d", [])


def test_unknown_keys_are_ignored():
    assert parse_view({"utm_source": "x", "q": "'; drop table t; --"}, SYMBOLS, "ETHUSDT") == (DEFAULT, [])


HOSTILE = {
    "symbol": ["BTCUSDT' OR 1=1 --", "DOGEUSDT", "btcusdt", "", "BTCUSDT; DROP TABLE candles_1m"],
    "interval": ["2m", "1m; drop table candles_1m", "1M", "candles_1m", "60"],
    "range": ["1y", "all", "'; delete from pipeline; --"],
    "theme": ["blue", "<script>alert(1)</script>"],
    "bull": ["#26a69a", "26a69", "26a69ag", "red", "26a69a'--", "javascript:alert(1)"],
    "bull_line": ["1234567"],
    "bear": ["rgb(1,2,3)"],
    "bear_line": [""],
}


@pytest.mark.parametrize(("key", "value"), [(key, value) for key, values in HOSTILE.items() for value in values])
def test_a_refused_value_is_named_and_the_default_kept(key, value):
    view, notices = parse_view({key: value}, SYMBOLS, "ETHUSDT")
    assert view == DEFAULT
    assert len(notices) == 1
    assert notices[0].startswith(f"Ignored {key}=")
    assert f"showing {getattr(DEFAULT, key)}" in notices[0]


@pytest.mark.parametrize("key", ["symbol", "interval", "range", "theme", "bull", "start"])
def test_a_very_long_value_is_refused_and_shown_short_and_inert(key):
    value = "<b>x</b>'; drop table candles_1m; --" + "A" * 10_000
    view, notices = parse_view({key: value, "end": "2026-11-24"} if key == "start" else {key: value}, SYMBOLS)
    assert view == View(symbol="BTCUSDT")
    assert len(notices) == 1
    assert len(notices[0]) < 120 + MAX_SHOWN
    shown = notices[0].split("=", 1)[1].split("'")[1]  # Ignored key='<shown>' is not ...
    assert shown == "?b?x??b????drop?table?candles_1m??--AAAA…"


def test_each_refused_value_has_its_own_notice_and_good_ones_stay():
    params = {"symbol": "NOPE", "interval": "5m", "bull": "zzzzzz", "theme": "light", "range": "forever"}
    view, notices = parse_view(params, SYMBOLS, "ETHUSDT")
    assert view == View(symbol="ETHUSDT", interval="5m", theme="light")
    assert [notice.split("=")[0] for notice in notices] == ["Ignored symbol", "Ignored range", "Ignored bull"]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-11-24", None),  # one end only
        (None, "2026-11-24"),
        ("2026-11-25", "2026-11-24"),  # start after end
        ("2025-11-01", "2026-11-24"),  # longer than 366 days
        ("2026-13-01", "2026-12-01"),  # no such month
        ("2026-02-30", "2026-03-01"),  # no such day
        ("20261124", "20261125"),  # not ISO with dashes
        ("2026-11-24T00:00", "2026-11-25"),
        ("2026-11-24' or '1'='1", "2026-11-25"),
        ("1900-01-01", "1900-01-02"),  # before any market data
        ("2101-01-01", "2101-01-02"),
    ],
)
def test_a_bad_date_range_is_refused_and_the_range_buttons_decide(start, end):
    params = {key: value for key, value in (("start", start), ("end", end)) if value is not None}
    view, notices = parse_view({**params, "range": "1d"}, SYMBOLS, "ETHUSDT")
    assert view == View(symbol="ETHUSDT", range="1d")
    assert len(notices) == 1
    assert notices[0].startswith("Ignored ")
    assert notices[0].endswith("showing the range buttons' choice.")


def test_one_date_alone_is_refused_naming_the_missing_one():
    assert parse_view({"end": "2026-11-24"}, SYMBOLS)[1] == [
        "Ignored end='2026-11-24' without start; showing the range buttons' choice."
    ]


def test_a_date_range_of_one_day_and_of_366_days_less_one_is_kept():
    one_day, _ = parse_view({"start": "2026-11-24", "end": "2026-11-24"}, SYMBOLS)
    assert one_day.window == (datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC))
    longest, notices = parse_view({"start": "2025-11-25", "end": "2026-11-24"}, SYMBOLS)
    assert (longest.start, longest.end, notices) == (date(2025, 11, 25), date(2026, 11, 24), [])


def test_without_dates_there_is_no_window():
    assert View(symbol="BTCUSDT", range="1d").window is None


@pytest.mark.parametrize(
    ("interval", "range_", "limit"),
    [
        ("1m", "auto", AUTO_CANDLES),
        ("1d", "auto", AUTO_CANDLES),
        ("1m", "1h", 60),
        ("5m", "6h", 72),
        ("1h", "1d", 24),
        ("4h", "1d", 6),
        ("4h", "6h", 2),  # a part candle counts: the range is covered
        ("1d", "1h", 1),  # less than one candle still shows the newest
        ("15m", "1w", 672),
        ("1m", "30d", MAX_CANDLES),  # 43,200 minutes: capped
        ("1m", "max", MAX_CANDLES),
    ],
)
def test_the_range_is_counted_in_candles_of_the_interval(interval, range_, limit):
    assert View(symbol="BTCUSDT", interval=interval, range=range_).candle_limit == limit


def test_a_date_range_loads_up_to_the_most_candles():
    assert A_DATED_VIEW.candle_limit == MAX_CANDLES
