"""dashboard/chart.py: the Plotly figure of a candle table — exact decimals, forming candle, volume, crosshair."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest

from dashboard.chart import FORMING, GAP, GAP_NOTE, INCOMPLETE, INCOMPLETE_NOTE, UNKNOWN, candle_figure, plain
from dashboard.queries import MarketQueries
from dashboard.view import THEMES, View
from include.candles import BY_NAME, CANDLE_SCHEMA
from tests.support.dashboard import START, snapshot_with_candles

VIEW = View(symbol="BTCUSDT", interval="5m", bull="00aa00", bull_line="005500", bear="cc0000", bear_line="660000")


@pytest.fixture(scope="module")
def candles(tmp_path_factory) -> pa.Table:
    """BTCUSDT's 5m candles of a 2-hour snapshot: 24 closed and one forming (its last 5 minutes not all in)."""
    path = tmp_path_factory.mktemp("snapshot") / "marts.duckdb"
    snapshot_with_candles(path, symbols=("BTCUSDT",), minutes=121)
    return MarketQueries.duckdb_snapshot(path).candles("BTCUSDT", "5m")


def traces(figure) -> dict[str, dict]:
    return {trace["name"]: trace for trace in figure.to_plotly_json()["data"]}


def time_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def as_shown(rows: list[dict], column: str) -> list[str]:
    """The exact decimal text of each row's value, without trailing zeros (computed per row, not by Arrow)."""
    return [format(row[column].normalize(), "f") for row in rows]


def test_candles_are_the_tables_exact_decimals_the_forming_one_apart(candles):
    rows = candles.to_pylist()
    assert [row["is_closed"] for row in rows] == [True] * 24 + [False]  # the fixture's shape
    drawn = traces(candle_figure(candles, VIEW))
    for name, expected in (("BTCUSDT 5m", rows[:-1]), (FORMING, rows[-1:])):
        trace = drawn[name]
        assert trace["type"] == "candlestick"
        assert list(trace["x"]) == [time_text(row["open_time"]) for row in expected]
        for column in ("open", "high", "low", "close"):
            assert list(trace[column]) == as_shown(expected, column), (name, column)
    # The forming candle is marked: fainter, and named in the legend (closed candles need no key).
    assert drawn[FORMING]["opacity"] < drawn["BTCUSDT 5m"]["opacity"] == 1
    assert (drawn[FORMING]["showlegend"], drawn["BTCUSDT 5m"]["showlegend"]) == (True, False)


def test_no_forming_trace_when_every_candle_is_closed(candles):
    closed = candles.slice(0, candles.num_rows - 1)
    assert set(traces(candle_figure(closed, VIEW))) == {"BTCUSDT 5m", "volume up", "volume down"}


def test_prices_beyond_a_floats_precision_stay_exact():
    exact = Decimal("12345678901234.12345678")  # 22 significant digits: a float keeps about 16
    moment = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    row = {name: None for name in CANDLE_SCHEMA.names}
    row |= {"symbol": "BTCUSDT", "open_time": moment, "close_time": moment + timedelta(minutes=1), "is_closed": True}
    row |= {"is_complete": True, "trade_count": 3}
    row |= {"open": exact, "high": exact + 1, "low": exact - Decimal("0.00000001"), "close": exact, "volume": exact}
    table = pa.Table.from_pylist([row], schema=CANDLE_SCHEMA)
    figure = candle_figure(table, VIEW)
    candle = traces(figure)["BTCUSDT 5m"]
    assert (candle["open"][0], candle["high"][0], candle["low"][0]) == (
        "12345678901234.12345678",
        "12345678901235.12345678",
        "12345678901234.12345677",
    )
    assert traces(figure)["volume up"]["y"][0] == "12345678901234.12345678"
    assert figure.to_plotly_json()["layout"]["annotations"][0]["text"] == "12345678901234.12345678"


def test_volume_bars_are_coloured_by_their_candles_direction(candles):
    rows = candles.to_pylist()
    drawn = traces(candle_figure(candles, VIEW))
    up = [row for row in rows[:-1] if row["close"] >= row["open"]]
    down = [row for row in rows[:-1] if row["close"] < row["open"]]
    assert len(up) > 0  # the fixture has both directions
    assert len(down) > 0
    for name, expected, colour in (("volume up", up, VIEW.bull), ("volume down", down, VIEW.bear)):
        bars = drawn[name]
        assert (bars["type"], bars["yaxis"], bars["marker"]["color"]) == ("bar", "y2", f"#{colour}")
        assert list(bars["x"]) == [time_text(row["open_time"]) for row in expected]
        assert list(bars["y"]) == as_shown(expected, "volume")
    forming = rows[-1]
    bar = drawn["volume forming"]
    assert list(bar["x"]) == [time_text(forming["open_time"])]
    assert list(bar["y"]) == as_shown([forming], "volume")
    assert bar["marker"]["color"] == f"#{VIEW.bull if forming['close'] >= forming['open'] else VIEW.bear}"
    assert bar["marker"]["opacity"] < drawn["volume up"]["marker"]["opacity"]


def test_the_four_colours_of_the_view_paint_the_candles(candles):
    drawn = traces(candle_figure(candles, VIEW))
    for name in ("BTCUSDT 5m", FORMING):
        assert drawn[name]["increasing"]["fillcolor"] == "#00aa00"
        assert drawn[name]["increasing"]["line"]["color"] == "#005500"
        assert drawn[name]["decreasing"]["fillcolor"] == "#cc0000"
        assert drawn[name]["decreasing"]["line"]["color"] == "#660000"


def hover(rows: list[dict], note: str = "") -> list[str]:
    """Each row's hover: its OHLCV as exact text, its trade count, and ``note``."""
    columns = [as_shown(rows, column) for column in ("open", "high", "low", "close", "volume")]
    return [
        "<br>".join(f"{label} {text}" for label, text in zip("OHLCV", values, strict=True))
        + f"<br>Trades {row['trade_count']}"
        + (f"<br>{note}" if note else "")
        for row, values in zip(rows, zip(*columns, strict=True), strict=True)
    ]


def test_hover_shows_each_candles_ohlcv_and_trade_count(candles):
    rows = candles.to_pylist()
    drawn = traces(candle_figure(candles, VIEW))
    assert list(drawn["BTCUSDT 5m"]["hovertext"]) == hover(rows[:-1])
    assert list(drawn[FORMING]["hovertext"]) == hover(rows[-1:], "forming: not closed yet")
    assert drawn["BTCUSDT 5m"]["hoverinfo"] == "x+text"


def test_the_last_price_is_marked_on_the_right_price_axis(candles):
    last_close = format(candles["close"][-1].as_py().normalize(), "f")
    layout = candle_figure(candles, VIEW).to_plotly_json()["layout"]
    assert layout["yaxis"]["side"] == "right"
    [line], [label] = layout["shapes"], layout["annotations"]
    assert (line["yref"], line["y0"], line["y1"], line["xref"], line["x0"], line["x1"]) == (
        "y",
        last_close,
        last_close,
        "paper",
        0,
        1,
    )
    assert (label["text"], label["y"], label["yref"], label["xref"], label["x"], label["xanchor"]) == (
        last_close,
        last_close,
        "y",
        "paper",
        1,
        "left",  # just right of the plot: on the price axis
    )


def test_navigation_crosshair_and_clean_axes(candles):
    layout = candle_figure(candles, VIEW).to_plotly_json()["layout"]
    assert "rangeselector" not in layout["xaxis"]  # the sidebar's range is the one set of range controls
    assert "rangeselector" not in layout["xaxis2"]
    assert layout["dragmode"] == "pan"
    assert layout["xaxis"]["rangeslider"]["visible"] is False
    for axis in ("xaxis", "xaxis2", "yaxis"):  # the crosshair: a line across the plot on each axis
        assert (layout[axis]["showspikes"], layout[axis]["spikemode"]) == (True, "across"), axis
    for axis in ("xaxis", "xaxis2", "yaxis", "yaxis2"):
        assert (layout[axis]["showgrid"], layout[axis]["zeroline"]) == (False, False), axis
    assert layout["xaxis"]["matches"] == "x2"  # candles and volume share one time axis
    assert layout["yaxis2"]["showticklabels"] is False  # no volume scale: time and price labels only


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_the_theme_colours_the_chart(candles, theme):
    layout = candle_figure(candles, View(symbol="BTCUSDT", theme=theme)).to_plotly_json()["layout"]
    colours = THEMES[theme]
    assert (layout["paper_bgcolor"], layout["plot_bgcolor"]) == (colours["background"], colours["background"])
    assert layout["font"]["color"] == colours["text"]
    assert layout["yaxis"]["spikecolor"] == colours["crosshair"]


def test_uirevision_is_kept_across_refreshes_and_changes_with_what_is_shown(candles):
    def revision(table: pa.Table, view: View) -> str:
        return candle_figure(table, view).to_plotly_json()["layout"]["uirevision"]

    shown = revision(candles, VIEW)
    refreshed = candles.slice(1)  # a later refresh: other candles, same view
    assert revision(refreshed, VIEW) == shown
    assert revision(candles, replace(VIEW, bull="123456", theme="light")) == shown  # restyled only
    for other in (
        replace(VIEW, symbol="ETHUSDT"),
        replace(VIEW, interval="1h"),
        replace(VIEW, range="1d"),
    ):
        assert revision(candles, other) != shown, other


def test_plain_drops_trailing_zeros_and_never_uses_an_exponent():
    assert [plain(Decimal(text)) for text in ("60000.50000000", "60000", "0.00020000", "1E+5", "-0.10")] == [
        "60000.5",
        "60000",
        "0.0002",
        "100000",
        "-0.1",
    ]


# --- what is not known, drawn so ----------------------------------------------------------------------

INCOMPLETE_MINUTES = frozenset({10, 11, 40})
GAP_MINUTES = frozenset({20, 21, 22, 50})


@pytest.fixture(scope="module")
def holey(tmp_path_factory) -> pa.Table:
    """BTCUSDT's 1m candles of an hour: minutes 10, 11 and 40 incomplete, 20-22 and 50 without prices."""
    path = tmp_path_factory.mktemp("holey") / "marts.duckdb"
    snapshot_with_candles(path, symbols=("BTCUSDT",), minutes=60, incomplete=INCOMPLETE_MINUTES, gaps=GAP_MINUTES)
    return MarketQueries.duckdb_snapshot(path).candles("BTCUSDT", "1m")


def test_an_incomplete_candle_is_drawn_apart_grey_and_hollow_and_says_trades_are_missing(holey):
    rows = holey.to_pylist()
    incomplete = [row for row in rows if row["close"] is not None and not row["is_complete"]]
    assert [row["open_time"] for row in incomplete] == [
        START + timedelta(minutes=m) for m in sorted(INCOMPLETE_MINUTES)
    ]
    drawn = traces(candle_figure(holey, replace(VIEW, interval="1m")))
    trace = drawn[INCOMPLETE]
    assert trace["type"] == "candlestick"
    assert list(trace["x"]) == [time_text(row["open_time"]) for row in incomplete]
    assert list(trace["close"]) == as_shown(incomplete, "close")  # its prices, exact, as far as they go
    for side in ("increasing", "decreasing"):  # hollow and grey, whatever the view's colours
        assert trace[side]["fillcolor"] == "rgba(0, 0, 0, 0)"
        assert trace[side]["line"]["color"] == UNKNOWN
    assert trace["showlegend"] is True
    assert list(trace["hovertext"]) == hover(incomplete, INCOMPLETE_NOTE)
    assert "trade ids missing" in INCOMPLETE_NOTE
    closed = list(drawn["BTCUSDT 1m"]["x"])
    assert not set(closed) & set(trace["x"])  # not drawn twice
    assert drawn["volume incomplete"]["marker"]["color"] == UNKNOWN


def test_a_bucket_without_prices_is_no_candle_but_a_shaded_band_and_a_named_marker(holey):
    figure = candle_figure(holey, replace(VIEW, interval="1m")).to_plotly_json()
    drawn = {trace["name"]: trace for trace in figure["data"]}
    gaps = [START + timedelta(minutes=m) for m in sorted(GAP_MINUTES)]
    candles = [x for trace in figure["data"] if trace["type"] == "candlestick" for x in trace["x"]]
    assert not {time_text(moment) for moment in gaps} & set(candles)
    assert len(candles) == 60 - len(GAP_MINUTES)
    marker = drawn[GAP]
    assert (marker["type"], marker["yaxis"], marker["showlegend"]) == ("scatter", "y2", True)
    assert list(marker["x"]) == [time_text(moment) for moment in gaps]
    assert set(marker["hovertext"]) == {GAP_NOTE}
    bands = [shape for shape in figure["layout"]["shapes"] if shape.get("name") == GAP]
    half = timedelta(seconds=30)
    runs = [(gaps[0], gaps[2]), (gaps[3], gaps[3])]  # 20-22 as one band, 50 alone
    assert [(band["x0"], band["x1"]) for band in bands] == [
        (time_text(first - half), time_text(last + half)) for first, last in runs
    ]
    assert all((band["yref"], band["y0"], band["y1"]) == ("y domain", 0, 1) for band in bands)


def test_the_last_price_is_the_last_one_known(holey):
    trailing = holey.slice(0, 51)  # ends with minute 50, which has no prices
    assert trailing["close"][-1].as_py() is None
    layout = candle_figure(trailing, replace(VIEW, interval="1m")).to_plotly_json()["layout"]
    assert layout["annotations"][0]["text"] == plain(holey["close"][49].as_py())


@pytest.mark.parametrize("interval", ["1m", "5m", "15m", "1h", "4h", "1d"])
def test_every_volume_bar_is_one_interval_wide(candles, interval):
    drawn = candle_figure(candles, replace(VIEW, interval=interval)).to_plotly_json()["data"]
    bars = [trace for trace in drawn if trace["type"] == "bar"]
    assert len(bars) == 3  # up, down, forming
    width_ms = BY_NAME[interval].length // timedelta(milliseconds=1)
    assert {trace["width"] for trace in bars} == {width_ms}
