"""The Streamlit page (dashboard/app.py) under AppTest, over snapshots written by tests/support/dashboard.py.

What the page shows is compared with what the snapshot holds, read here straight from its file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import duckdb
import numpy as np
import pytest
from streamlit.elements.lib import policies
from streamlit.testing.v1 import AppTest, local_script_runner

from dashboard.alerts import ALERTS_REFRESH_SECONDS
from dashboard.chart import FORMING, INCOMPLETE
from dashboard.view import DEFAULT_COLOURS, THEMES, View
from include.lake.keys import trade_key
from include.lake.store import LocalStore
from include.lake.trades import read_trades, write_trades
from include.timeutil import HOUR_US, to_us
from tests.support.apptest import badges as health_badges
from tests.support.apptest import page, texts
from tests.support.dashboard import START, empty_snapshot, first_trade_id, snapshot_with_candles
from tests.support.paths import REPO_ROOT
from tests.support.trades import trade_columns

STREAMLIT_CONFIG = REPO_ROOT / "dashboard" / ".streamlit" / "config.toml"  # beside the app: read whatever the cwd
SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPETH")
DEFAULT_QUERY = {"symbol": "BTCUSDT", "interval": "1m", "range": "auto", **DEFAULT_COLOURS, "theme": "dark"}


@pytest.fixture
def snapshot_path(tmp_path, monkeypatch) -> Path:
    """Where the page reads its snapshot (DASHBOARD_SNAPSHOT); nothing is written there yet."""
    path = tmp_path / "dashboard" / "marts.duckdb"
    monkeypatch.setenv("DASHBOARD_SNAPSHOT", str(path))
    monkeypatch.setenv("LAKE_URL", f"file://{tmp_path / 'lake'}")  # the speed layer's: empty unless a test writes
    monkeypatch.setenv("WAREHOUSE", "duckdb")
    monkeypatch.setenv("SYMBOLS", "BTCUSDT,ETHUSDT")
    rules = tmp_path / "rules.yaml"  # the alerts' rules file: none, so the page shows no refused rule
    rules.write_text("rules: []\n")
    monkeypatch.setenv("ALERT_RULES", str(rules))
    return path


@pytest.fixture
def snapshot(snapshot_path):
    """Two hours of three symbols, the last minute forming."""
    return snapshot_with_candles(snapshot_path, symbols=SYMBOLS, minutes=120)


def figure(app: AppTest) -> dict:
    charts = app.get("plotly_chart")
    assert len(charts) == 1, "the page shows one chart"
    return {"spec": json.loads(charts[0].proto.spec), "config": json.loads(charts[0].proto.config)}


def traces(app: AppTest) -> dict[str, dict]:
    return {trace["name"]: trace for trace in figure(app)["spec"]["data"]}


def health_rows(app: AppTest) -> list[tuple[str, str, str, list[str]]]:
    """The health table as shown: (check, subject, value, status) per row, in order."""
    [table] = [frame.value for frame in app.dataframe if frame.value.columns[0] == "Status"]
    return [(check, subject, value, list(status)) for status, check, subject, value in table.itertuples(index=False)]


def badges(app: AppTest) -> list[str]:
    return health_badges(app, "Pipeline health")


def snapshot_rows(path: Path, symbol: str, interval: str = "1m") -> list[dict]:
    """The snapshot's candles of ``symbol``, oldest first, read from its file without the app's code."""
    with duckdb.connect(str(path), read_only=True) as connection:
        cursor = connection.execute(
            "select open_time, open, high, low, close, volume, trade_count, last_trade_time, is_closed, is_complete "
            f"from candles_{interval} where symbol = ? order by open_time",
            [symbol],
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def exact(value: Decimal) -> str:
    """A price as the chart sends it: every digit, no trailing zeros, no exponent."""
    return format(value.normalize(), "f")


def time_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def drawn_candles(app: AppTest) -> list[tuple[str, str, str, str, str, str]]:
    """(time, open, high, low, close, how drawn) of every candle on the page's chart: "closed",
    FORMING or INCOMPLETE (each in a trace of its own)."""
    drawn = []
    for name, trace in traces(app).items():
        if trace["type"] == "candlestick":
            columns = (trace["x"], trace["open"], trace["high"], trace["low"], trace["close"])
            kind = name if name in (FORMING, INCOMPLETE) else "closed"
            drawn += [(*row, kind) for row in zip(*columns, strict=True)]
    return sorted(drawn)


def drawn_as(row: dict) -> str:
    if not row["is_complete"]:
        return INCOMPLETE
    return "closed" if row["is_closed"] else FORMING


def expected_candles(rows: list[dict]) -> list[tuple[str, str, str, str, str, str]]:
    """The candles ``rows`` draw: those with prices."""
    return sorted(
        (time_text(row["open_time"]), *(exact(row[name]) for name in ("open", "high", "low", "close")), drawn_as(row))
        for row in rows
        if row["close"] is not None
    )


# The controls -----------------------------------------------------------------------------------


def test_the_symbol_selector_lists_every_symbol_in_the_marts(snapshot, monkeypatch):
    monkeypatch.setenv("SYMBOLS", "ETHUSDT,BTCUSDT")  # the first configured symbol is shown first
    app = page()
    selector = app.selectbox(key="symbol")
    assert selector.options == list(SYMBOLS)
    assert selector.value == "ETHUSDT"


def test_the_interval_selector_offers_exactly_the_six_intervals(snapshot):
    assert page().segmented_control(key="interval").options == ["1m", "5m", "15m", "1h", "4h", "1d"]


def test_no_widget_policy_warning_from_the_controls(snapshot, monkeypatch):
    warned: list[tuple] = []
    monkeypatch.setattr(policies, "_shown_default_value_warning", False)  # Streamlit warns once per process
    monkeypatch.setattr(policies._LOGGER, "warning", lambda *args, **kwargs: warned.append(args))
    app = page({"start": "2026-11-24", "end": "2026-11-24"})
    app.color_picker(key="bull").pick("#123456").run()
    app.date_input(key="dates").set_value((date(2026, 11, 23), date(2026, 11, 24))).run()
    assert not app.exception
    assert warned == []


# The chart ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("interval", ["1m", "5m", "15m", "1h", "4h", "1d"])
def test_the_charts_candles_are_the_snapshots_exact_decimals(snapshot, interval):
    app = page({"symbol": "ETHUSDT", "interval": interval})
    expected = expected_candles(snapshot_rows(snapshot.path, "ETHUSDT", interval))
    assert drawn_candles(app) == expected
    assert [kind for *_, kind in expected].count("closed") < len(expected)  # the newest one drawn apart


def test_the_chart_marks_volume_forming_candle_last_price_and_navigation(snapshot):
    app = page({"symbol": "XRPETH"})
    rows = snapshot_rows(snapshot.path, "XRPETH")
    drawn, spec, config = traces(app), figure(app)["spec"], figure(app)["config"]
    # Volume bars by direction, in the view's colours; the forming candle's apart.
    rising = [time_text(row["open_time"]) for row in rows[:-1] if row["close"] >= row["open"]]
    falling = [time_text(row["open_time"]) for row in rows[:-1] if row["close"] < row["open"]]
    assert (drawn["volume up"]["x"], drawn["volume up"]["marker"]["color"]) == (rising, "#26a69a")
    assert (drawn["volume down"]["x"], drawn["volume down"]["marker"]["color"]) == (falling, "#ef5350")
    assert drawn["volume forming"]["x"] == [time_text(rows[-1]["open_time"])]
    assert drawn["volume up"]["y"][0] == exact(next(row for row in rows[:-1] if row["close"] >= row["open"])["volume"])
    # The forming candle: in its own, fainter trace, named in the legend.
    assert drawn[FORMING]["x"] == [time_text(rows[-1]["open_time"])]
    assert drawn[FORMING]["opacity"] < 1
    assert drawn[FORMING]["showlegend"] is True
    # Hover: the candle's OHLCV and its trade count.
    first = rows[0]
    assert (
        drawn["XRPETH 1m"]["hovertext"][0]
        == "<br>".join(
            f"{label} {exact(first[name])}"
            for label, name in zip("OHLCV", ("open", "high", "low", "close", "volume"), strict=True)
        )
        + f"<br>Trades {first['trade_count']}"
    )
    # The last price on the right-side price axis.
    layout = spec["layout"]
    assert layout["yaxis"]["side"] == "right"
    assert layout["annotations"][0]["text"] == exact(snapshot.last_close["XRPETH"])
    assert layout["shapes"][0]["y0"] == exact(snapshot.last_close["XRPETH"])
    # Navigation: drag pans, the wheel zooms, double-click resets; a crosshair. No range buttons in the
    # chart: the sidebar's range is the one set of range controls.
    assert "rangeselector" not in layout["xaxis"]
    assert layout["dragmode"] == "pan"
    assert (config["scrollZoom"], config["doubleClick"]) == (True, "reset")
    assert layout["xaxis"]["showspikes"] is True
    assert layout["yaxis"]["showspikes"] is True


def test_ten_thousand_candles_render(snapshot_path):
    facts = snapshot_with_candles(snapshot_path, symbols=("BTCUSDT",), minutes=10_000, health=False)
    app = page({"range": "max"})
    drawn = drawn_candles(app)
    assert len(drawn) == 10_000
    assert drawn == expected_candles(snapshot_rows(facts.path, "BTCUSDT"))


# The header --------------------------------------------------------------------------------------


def grouped(value: Decimal) -> str:
    return f"{value.normalize():,f}"


def test_the_header_is_the_last_price_and_the_24h_figures_of_the_snapshot(snapshot_path):
    snapshot_with_candles(snapshot_path, symbols=("BTCUSDT", "ETHUSDT"), minutes=25 * 60)  # more than 24 h
    rows = snapshot_rows(snapshot_path, "ETHUSDT")
    window = [row for row in rows if row["open_time"] > rows[-1]["open_time"] - timedelta(days=1)]
    assert len(window) == 1440
    last, opened = rows[-1]["close"], window[0]["open"]
    change = last - opened
    percent = (change * 100 / opened).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
    sign = "+" if change >= 0 else "-"
    app = page({"symbol": "ETHUSDT"})
    high, low = max(row["high"] for row in window), min(row["low"] for row in window)
    volume = sum(row["volume"] for row in window)
    shown = [(metric.label, metric.value, metric.delta) for metric in app.metric]
    assert shown[:4] == [
        ("ETHUSDT · 1m", grouped(last), f"{sign}{grouped(abs(change))} ({sign}{abs(percent)}%)"),
        ("24 h high", grouped(high), ""),
        ("24 h low", grouped(low), ""),
        ("24 h volume", grouped(volume), ""),
    ]
    # The last trade: the snapshot's newest, long ago (its candles are from 2026-11-24 08:00 on).
    [(label, age, _)] = shown[4:]
    assert label == "Last trade"
    assert age.endswith(" ago")
    assert app.metric[4].help.endswith(f"{rows[-1]['last_trade_time']:%Y-%m-%d %H:%M:%S} UTC")


# The URL -----------------------------------------------------------------------------------------


def test_every_choice_goes_into_the_url_and_the_url_reproduces_the_view(snapshot):
    app = page()
    assert app.query_params == DEFAULT_QUERY
    app.selectbox(key="symbol").select("ETHUSDT").run()
    app.segmented_control(key="interval").set_value("15m").run()
    app.segmented_control(key="range").set_value("1d").run()
    for key, colour in (("bull", "#112233"), ("bull_line", "#445566"), ("bear", "#778899"), ("bear_line", "#aabbcc")):
        app.color_picker(key=key).pick(colour).run()
    app.segmented_control(key="theme").set_value("light").run()
    chosen = {"symbol": "ETHUSDT", "interval": "15m", "range": "1d", "bull": "112233", "bull_line": "445566"}
    chosen |= {"bear": "778899", "bear_line": "aabbcc", "theme": "light"}
    assert app.query_params == chosen

    shared = page(dict(app.query_params))  # a fresh session opening the link
    assert shared.query_params == chosen
    assert shared.selectbox(key="symbol").value == "ETHUSDT"
    assert shared.segmented_control(key="interval").value == "15m"
    assert shared.segmented_control(key="range").value == "1d"
    assert shared.segmented_control(key="theme").value == "light"
    for key in ("bull", "bull_line", "bear", "bear_line"):
        assert shared.color_picker(key=key).value == f"#{chosen[key]}"
    drawn, layout = traces(shared), figure(shared)["spec"]["layout"]
    assert drawn["ETHUSDT 15m"]["increasing"] == {"fillcolor": "#112233", "line": {"color": "#445566", "width": 1}}
    assert drawn["ETHUSDT 15m"]["decreasing"] == {"fillcolor": "#778899", "line": {"color": "#aabbcc", "width": 1}}
    assert layout["paper_bgcolor"] == THEMES["light"]["background"]
    assert shared.get("html") == []  # no CSS: the page's theme is Streamlit's config (dashboard/.streamlit)
    assert len(drawn_candles(shared)) == len(snapshot_rows(snapshot.path, "ETHUSDT", "15m"))  # 1 d: all of them


def test_the_pages_theme_is_streamlits_config_in_the_charts_default_colours():
    theme = tomllib.loads(STREAMLIT_CONFIG.read_text())["theme"]
    assert View(symbol="BTCUSDT").theme == "dark"
    assert (theme["base"], theme["backgroundColor"], theme["textColor"]) == (
        "dark",
        THEMES["dark"]["background"],
        THEMES["dark"]["text"],
    )


def test_a_date_range_goes_into_the_url_and_shows_those_days(snapshot_path):
    snapshot_with_candles(snapshot_path, symbols=("BTCUSDT",), minutes=3 * 1440)  # 24, 25 and 26 November
    app = page({"interval": "1h"})
    app.date_input(key="dates").set_value((date(2026, 11, 25), date(2026, 11, 25))).run()
    dated = {key: value for key, value in DEFAULT_QUERY.items() if key != "range"}  # the dates replace it
    assert app.query_params == dated | {"interval": "1h", "start": "2026-11-25", "end": "2026-11-25"}

    shared = page(dict(app.query_params))
    assert shared.date_input(key="dates").value == (date(2026, 11, 25), date(2026, 11, 25))
    assert shared.segmented_control(key="range").value is None
    day = [
        row for row in snapshot_rows(snapshot_path, "BTCUSDT", "1h") if row["open_time"].date() == date(2026, 11, 25)
    ]
    assert len(day) == 24
    assert drawn_candles(shared) == expected_candles(day)


HOSTILE = [
    {"symbol": "BTCUSDT' OR '1'='1"},
    {"symbol": "BTCUSDT; DROP TABLE candles_1m; --"},
    {"symbol": "DOGEUSDT"},
    {"interval": "7m"},
    {"interval": "1m UNION SELECT * FROM pipeline"},
    {"range": "forever"},
    {"theme": "<script>alert(1)</script>"},
    {"bull": "#26a69a"},
    {"bear_line": "red"},
    {"start": "2026-11-31", "end": "2026-12-01"},
    {"start": "2026-11-24"},
    {"start": "'; drop table candles_1m; --", "end": "2026-11-24"},
    {key: "A" * 10_000 for key in ("symbol", "interval", "range", "bull", "bull_line", "bear", "bear_line", "theme")},
    {"start": "9" * 10_000, "end": "2026-11-24"},
]


@pytest.mark.parametrize("query", HOSTILE, ids=lambda query: ",".join(query)[:40])
def test_hostile_query_values_are_refused_with_a_notice_and_the_chart_still_renders(snapshot, query):
    app = page(query)
    notices = [warning.value for warning in app.warning]
    for key in {"start" if key == "end" else key for key in query}:  # a date range is refused as one
        named = ("start", "end") if key == "start" else (key,)
        assert sum(notice.startswith(tuple(f"Ignored {name}=" for name in named)) for notice in notices) == 1, notices
    assert all(len(notice) < 200 for notice in notices)
    assert app.query_params == DEFAULT_QUERY  # the URL now shows what is on screen
    assert drawn_candles(app) == expected_candles(snapshot_rows(snapshot.path, "BTCUSDT"))


# Nothing to show ----------------------------------------------------------------------------------


def test_an_empty_snapshot_is_explained(snapshot_path):
    empty_snapshot(snapshot_path)
    app = page()
    assert app.get("plotly_chart") == []
    assert not app.error
    assert any("no candles yet" in text and "make up" in text for text in texts(app.info))


def test_a_missing_snapshot_is_explained(snapshot_path):
    app = page()
    assert not snapshot_path.exists()
    assert app.get("plotly_chart") == []
    assert not app.error
    assert any(f"No dashboard snapshot at {snapshot_path}" in text for text in texts(app.info))


def test_an_unreadable_snapshot_is_an_error_with_the_databases_words_as_they_are(snapshot_path):
    snapshot_path.parent.mkdir(parents=True)
    snapshot_path.write_bytes(b"not a database" * 100)  # published, and unreadable
    app = page()
    assert texts(app.error) == ["The dashboard could not read the data:"]
    [detail] = texts(app.code)
    assert str(snapshot_path) in detail  # literal: a code block, not Markdown
    assert app.get("plotly_chart") == []


# Source and health ------------------------------------------------------------------------------


def test_sandbox_data_is_announced(snapshot):
    assert any(text.startswith("Sandbox data:") for text in texts(page().info))


def test_binance_data_has_no_sandbox_banner(snapshot_path):
    snapshot_with_candles(snapshot_path, exchange="binance")
    app = page()
    assert not any("Sandbox" in text for text in texts(app.info))
    assert len(app.get("plotly_chart")) == 1


def test_stale_and_failing_facts_are_counted_and_listed_first(snapshot_path):
    long_ago = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=30)
    snapshot_with_candles(snapshot_path, start=long_ago)
    app = page()
    rows = health_rows(app)
    failing = [row[:3] for row in rows if row[3] == ["failing"]]
    assert rows[: len(failing)] == [(*row, ["failing"]) for row in failing]  # the worst first
    for what in (
        ("Last closed candle", "BTCUSDT", "29 d ago"),
        ("Last closed candle", "ETHUSDT", "29 d ago"),
        ("Pipeline", "last load", "29 d ago"),
        ("Pipeline", "last transform", "29 d ago"),
    ):
        assert what in failing, failing
    assert any(row[:2] == ("Stream", "BTCUSDT") and row[2].startswith("heartbeat 29 d ago") for row in failing)
    assert any(row[:2] == ("Exchange audit", "all symbols") and row[2].endswith(", 1 mismatch") for row in failing)
    [gaps] = [row for row in rows if row[0] == "Gap repair"]
    assert (gaps[2].endswith(", 3 missing"), gaps[3]) == (True, ["warning"])
    assert badges(app) == [f":red-badge[{len(failing)} failing]", ":orange-badge[1 warning]"]
    assert (app.error, app.warning) == ([], [])  # no text from the warehouse in an alert's Markdown


def test_fresh_facts_are_shown_fine(snapshot_path):
    now = datetime.now(UTC)
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=119)  # the current minute forming
    snapshot_with_candles(snapshot_path, start=start, now=now)
    app = page()
    rows = health_rows(app)
    # What the snapshot holds as wrong stays shown; nothing about age or streams is.
    assert [(row[0], row[3]) for row in rows[:2]] == [("Exchange audit", ["failing"]), ("Gap repair", ["warning"])]
    ok = {(row[0], row[1]) for row in rows if row[3] == ["ok"]}
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert {("Last closed candle", symbol), ("Stream", symbol), ("Incomplete 1m candles", symbol)} <= ok
    assert {("Pipeline", "last load"), ("Pipeline", "last transform")} <= ok
    assert badges(app) == [":red-badge[1 failing]", ":orange-badge[1 warning]"]
    # The audit's mismatch, in full, under the table.
    [mismatches] = [frame.value for frame in app.dataframe if "differences" in frame.value.columns]
    assert list(mismatches.itertuples(index=False)) == [
        ("BTCUSDT", "1m", start + timedelta(minutes=1), "close: warehouse 1.00000000 != exchange 1.00000001")
    ]


def test_an_incomplete_candles_hover_says_trades_are_missing(snapshot_path):
    snapshot_with_candles(snapshot_path, symbols=("BTCUSDT",), minutes=30, incomplete=frozenset({7}))
    drawn = traces(page())
    [hover] = drawn[INCOMPLETE]["hovertext"]
    assert drawn[INCOMPLETE]["x"] == [time_text(START + timedelta(minutes=7))]
    assert hover.endswith("<br>incomplete: trade ids missing, figures may be short")
    assert all("missing" not in text for text in drawn["BTCUSDT 1m"]["hovertext"])


def test_the_health_panel_counts_closed_incomplete_candles_per_symbol_and_since_when(snapshot_path):
    now = datetime.now(UTC)  # the heartbeats' time: a minute-aligned one may already be a minute late
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=119)
    # Minutes 5, 6 and 90 closed and incomplete, 100 without prices; minute 119 is forming.
    snapshot_with_candles(snapshot_path, start=start, now=now, incomplete=frozenset({5, 6, 90}), gaps=frozenset({100}))
    app = page()
    since = f"{start + timedelta(minutes=5):%Y-%m-%d %H:%M}Z"
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert ("Incomplete 1m candles", symbol, f"4 incomplete since {since}", ["warning"]) in health_rows(app)
    assert badges(app) == [":red-badge[1 failing]", ":orange-badge[3 warnings]"]  # and the gap repair's


def test_checks_that_never_ran_say_not_yet_in_grey(snapshot_path):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    snapshot_with_candles(snapshot_path, start=now - timedelta(minutes=119), now=now, health=False)
    app = page()
    not_yet = [row[:3] for row in health_rows(app) if row[3] == ["not yet"]]
    assert not_yet == [
        ("Gap repair", "all symbols", "not yet: no repair window checked"),
        ("Exchange audit", "all symbols", "not yet: no closed candle audited"),
        ("Stream", "all symbols", "not yet: no heartbeat in the warehouse"),
    ]
    assert badges(app) == [":green-badge[all fine]"]  # not yet is not wrong


def test_a_streams_row_is_its_symbol_and_its_connection(snapshot):
    streams = [row for row in health_rows(page()) if row[0] == "Stream"]
    assert [row[1] for row in streams] == sorted(SYMBOLS)
    assert all(", connection " in row[2] for row in streams)  # the connection's number after, named


def test_the_snapshot_and_the_exchange_close_the_health_table(snapshot):
    *_, published, exchange = health_rows(page())
    assert published == ("Pipeline", "snapshot", f"{snapshot.end:%Y-%m-%d %H:%M:%S}Z", [])
    assert exchange == ("Pipeline", "exchange", "sandbox", [])


# Live ----------------------------------------------------------------------------------------------


def test_trades_in_the_lake_above_the_marts_are_on_the_chart_and_in_the_header(snapshot_path, tmp_path):
    """The speed layer on the page: the lake's trades after the snapshot's newest one (its forming minute)
    make the next two minutes, and the header's last price is the newest trade's."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40)  # the live edge's reach
    facts = snapshot_with_candles(snapshot_path, symbols=("BTCUSDT",), minutes=30, start=start)
    [frontier] = snapshot_rows(snapshot_path, "BTCUSDT")[-1:]
    last_id = first_trade_id("BTCUSDT") + sum(row["trade_count"] for row in snapshot_rows(snapshot_path, "BTCUSDT")) - 1
    ids = np.arange(last_id + 1, last_id + 13)
    times = to_us(facts.end) + np.arange(12) * 10_000_000  # the two minutes after the forming one, every 10 s
    lake = LocalStore(tmp_path / "lake")
    write_trades(lake, trade_columns("BTCUSDT", ids, times), "stream", to_us(facts.end))
    prices = {row["trade_id"]: row["price"] for row in read_trades(lake, "BTCUSDT").to_pylist()}
    app = page()
    drawn = drawn_candles(app)
    assert len(drawn) == 32
    newest = [row for row in drawn if row[0] >= time_text(facts.end)]
    assert [row[0] for row in newest] == [time_text(facts.end), time_text(facts.end + timedelta(minutes=1))]
    assert newest[-1][4] == exact(prices[int(ids[-1])])  # its close: the newest trade, exact
    assert (newest[0][5], newest[-1][5]) == ("closed", FORMING)  # a later trade closed the first
    assert next(row for row in drawn if row[0] == time_text(frontier["open_time"]))[5] == "closed"
    assert app.metric[0].value == grouped(prices[int(ids[-1])])
    traded = datetime.fromtimestamp(int(times[-1]) / 1_000_000, UTC)
    assert app.metric[4].help.endswith(f"{traded:%Y-%m-%d %H:%M:%S} UTC")  # the last trade: the lake's newest


def test_a_warehouse_a_day_behind_says_the_live_edge_is_off(snapshot):
    """The snapshot's candles are from 2026-11-24: far more than a day before the clock."""
    app = page()
    assert drawn_candles(app) == expected_candles(snapshot_rows(snapshot.path, "BTCUSDT"))
    assert any(
        item.value.startswith("Live edge off: the warehouse's newest trade is more than 24 h old")
        for item in app.caption
    )


@dataclass
class Runs:
    """The forward messages of the last run, and a way to rerun one fragment as the browser's timer does."""

    messages: list


@contextlib.contextmanager
def recorded_runs(monkeypatch) -> Iterator[Runs]:
    runs = Runs([])
    parse = local_script_runner.parse_tree_from_messages

    def recording(messages):
        runs.messages = list(messages)
        return parse(messages)

    monkeypatch.setattr(local_script_runner, "parse_tree_from_messages", recording)
    yield runs


def rerun_fragment(app: AppTest, fragment_id: str, monkeypatch) -> None:
    """What Streamlit does when a fragment's run_every timer fires: a rerun of that fragment alone."""
    with monkeypatch.context() as patch:
        rerun = functools.partial(local_script_runner.RerunData, fragment_id=fragment_id, is_auto_rerun=True)
        patch.setattr(local_script_runner, "RerunData", rerun)
        app.run()
    assert not app.exception, [item.value for item in app.exception]


def test_an_unreadable_lake_leaves_the_marts_candles_and_says_so(snapshot_path, tmp_path):
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40)
    facts = snapshot_with_candles(snapshot_path, symbols=("BTCUSDT",), minutes=30, start=start)
    last_id = first_trade_id("BTCUSDT") + sum(row["trade_count"] for row in snapshot_rows(snapshot_path, "BTCUSDT"))
    key = trade_key("BTCUSDT", to_us(facts.end) // HOUR_US * HOUR_US, "stream", last_id, last_id + 5)
    LocalStore(tmp_path / "lake").put(key, b"not parquet")  # above the frontier: read, and unreadable
    app = page()
    assert drawn_candles(app) == expected_candles(snapshot_rows(snapshot_path, "BTCUSDT"))
    [shown] = [item.value for item in app.text if item.value.startswith("Live edge unavailable")]
    assert "the warehouse's candles are shown" in shown


def test_the_chart_refreshes_in_its_fragment_every_few_seconds(snapshot_path, monkeypatch):
    snapshot_with_candles(snapshot_path, symbols=("BTCUSDT",), minutes=120)
    with recorded_runs(monkeypatch) as runs:
        app = page()
        timers = [message.auto_rerun for message in runs.messages if message.HasField("auto_rerun")]
        # The chart's every 2 s (the freshness target), the alerts' in their own, slower fragment.
        assert [(timer.interval, bool(timer.fragment_id)) for timer in timers] == [
            (2.0, True),
            (ALERTS_REFRESH_SECONDS, True),
        ]
        fragment = timers[0].fragment_id
        chart_deltas = [
            m.delta for m in runs.messages if m.HasField("delta") and m.delta.new_element.HasField("plotly_chart")
        ]
        assert [delta.fragment_id for delta in chart_deltas] == [fragment]  # the chart is drawn in the fragment
        revision = figure(app)["spec"]["layout"]["uirevision"]
        assert len(drawn_candles(app)) == 120

        later = snapshot_with_candles(snapshot_path, symbols=("BTCUSDT",), minutes=121)  # the next minute published
        rerun_fragment(app, fragment, monkeypatch)

        assert drawn_candles(app) == expected_candles(snapshot_rows(later.path, "BTCUSDT"))
        assert len(drawn_candles(app)) == 121
        assert figure(app)["spec"]["layout"]["uirevision"] == revision  # the user's zoom and pan are kept
        assert app.metric[0].label == "BTCUSDT · 1m"  # the header refreshed with it
        assert app.metric[0].value == grouped(later.last_close["BTCUSDT"])
        # Only the fragment ran: the controls were not sent again (they do not flicker).
        assert not app.sidebar.children
        assert all(m.delta.fragment_id == fragment for m in runs.messages if m.HasField("delta"))
