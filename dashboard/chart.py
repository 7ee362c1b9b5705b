"""The candlestick chart as a Plotly figure, TradingView-like: candles over volume, crosshair, last price.

Pure (no Streamlit): the benchmark times ``candle_figure`` on 10,000 candles straight from the query
module. Prices and volumes go to Plotly as exact decimal strings made by Arrow from the DECIMAL
columns (``pc.cast(decimal, string)``), never through a Python float; the browser parses them for
drawing, and the hover shows the strings themselves. Work is vectorised in Arrow: no Python loop
per candle (only per run of candles without prices, which are few).

What is not known is drawn so: a candle with trade ids missing (``is_complete`` false) is grey and
hollow in a trace of its own ("incomplete: trades missing"), and says so in its hover; a bucket
without prices (ids missing, no trade known) is no candle at all but a shaded band across the price
pane, with a marker on the volume pane that names it in the legend and the hover.

Volume bars are given their width, one interval in ms: Plotly would size a bar trace's bars by the
smallest gap between its own points, and the up/down traces are sparse. The range is chosen in the
sidebar alone (no Plotly range buttons: one set of range controls).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.compute as pc

from dashboard.view import THEMES, View
from include.candles import BY_NAME

# Passed to st.plotly_chart: wheel zooms, drag pans (layout.dragmode), double-click resets.
PLOTLY_CONFIG = {
    "scrollZoom": True,
    "doubleClick": "reset",
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
}
PRICE_AXIS_WIDTH = 72  # px on the right for the price labels and the last-price label
FORMING = "forming (not closed)"
INCOMPLETE = "incomplete: trades missing"
GAP = "no prices: trades missing"
INCOMPLETE_NOTE = "incomplete: trade ids missing, figures may be short"
GAP_NOTE = "no trade known: ids missing, prices unknown"
UNKNOWN = "#9598a1"  # grey: what is incomplete or unknown, in both themes
GAP_FILL = "rgba(149, 152, 161, 0.16)"
_TRAILING_ZEROS = r"\.?0+$"  # only on strings with a decimal point: "60000.50000000" -> "60000.5"


def decimal_strings(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Exact decimal strings of a DECIMAL column, trailing zeros dropped (shorter to send, same value)."""
    text = pc.cast(column, pa.string())
    if not pa.types.is_decimal(column.type) or column.type.scale == 0:
        return text
    return pc.replace_substring_regex(text, _TRAILING_ZEROS, "")


def plain(value: Decimal) -> str:
    """A Decimal as a plain string without exponent or trailing zeros (``60000.5``)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _array(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A numpy array for Plotly: its validators take a homogeneous array whole, where a list is
    checked element by element (10,000 candles: about a second). Fixed-width strings, not objects:
    Plotly deep-copies each trace's arrays, which is one memory copy for them."""
    return values.to_numpy(zero_copy_only=False).astype(str)


def _times(column: pa.ChunkedArray) -> np.ndarray:
    # Plotly's date axis reads "YYYY-MM-DD HH:MM:SS" as given: the chart is in UTC, like the marts.
    # Whole seconds first: Arrow's %S of a microsecond timestamp adds ".000000" to every time sent.
    seconds = pc.cast(column, pa.timestamp("s", tz="UTC"), safe=False)  # candles open on whole minutes
    return _array(pc.strftime(seconds, format="%Y-%m-%d %H:%M:%S"))


def _hover(prices: dict[str, pa.Array], trades: pa.Array, note: str) -> np.ndarray:
    """One "O .. H .. L .. C .. V .. Trades .." text per candle, from the exact strings, and ``note``."""
    parts = []
    for label, name in (("O", "open"), ("H", "high"), ("L", "low"), ("C", "close"), ("V", "volume")):
        parts += [pa.scalar(f"{label} "), prices[name], pa.scalar("<br>")]
    parts += [pa.scalar("Trades "), pc.cast(trades, pa.string()), pa.scalar(f"<br>{note}" if note else "")]
    return _array(pc.binary_join_element_wise(*parts, ""))


def _candles(table: pa.Table, view: View, name: str, note: str = "") -> dict[str, object]:
    prices = {column: decimal_strings(table[column]) for column in ("open", "high", "low", "close", "volume")}
    trace = {
        "type": "candlestick",
        "x": _times(table["open_time"]),
        "open": _array(prices["open"]),
        "high": _array(prices["high"]),
        "low": _array(prices["low"]),
        "close": _array(prices["close"]),
        "hovertext": _hover(prices, pc.fill_null(table["trade_count"], 0), note),
        "hoverinfo": "x+text",
        "name": name,
        "opacity": 1.0,
        "increasing": {"fillcolor": f"#{view.bull}", "line": {"color": f"#{view.bull_line}", "width": 1}},
        "decreasing": {"fillcolor": f"#{view.bear}", "line": {"color": f"#{view.bear_line}", "width": 1}},
        "showlegend": name in (FORMING, INCOMPLETE),  # named in the legend; closed complete ones need no key
        "xaxis": "x",
        "yaxis": "y",
    }
    if name == FORMING:
        trace["opacity"] = 0.5
    if name == INCOMPLETE:  # grey and hollow whatever the direction: nobody takes it for a real candle
        hollow = {"fillcolor": "rgba(0, 0, 0, 0)", "line": {"color": UNKNOWN, "width": 1}}
        trace |= {"increasing": hollow, "decreasing": hollow}
    return trace


def _volume(table: pa.Table, colour: str, opacity: float, name: str, width_ms: int) -> dict[str, object]:
    return {
        "type": "bar",
        "x": _times(table["open_time"]),
        "y": _array(decimal_strings(table["volume"])),
        "width": width_ms,  # one interval: each bar spans its own bucket, whatever the trace's other bars
        "marker": {"color": colour, "opacity": opacity, "line": {"width": 0}},
        "name": name,
        "hoverinfo": "skip",  # the candle's hover already shows V
        "showlegend": False,
        "xaxis": "x2",
        "yaxis": "y2",
    }


def _volumes(parts: dict[str, pa.Table], view: View) -> list[dict[str, object]]:
    """Volume bars coloured by direction, one trace per colour (a colour per bar costs a check per bar);
    the forming candle's bar fainter, like its candle; an incomplete candle's grey."""
    width = BY_NAME[view.interval].length // timedelta(milliseconds=1)
    closed = parts["closed"]
    rising = pc.fill_null(pc.greater_equal(closed["close"], closed["open"]), True)
    bars = [
        _volume(closed.filter(rising), f"#{view.bull}", 0.55, "volume up", width),
        _volume(closed.filter(pc.invert(rising)), f"#{view.bear}", 0.55, "volume down", width),
    ]
    forming = parts["forming"]
    if forming.num_rows:
        colour = f"#{view.bull if _rising(forming) else view.bear}"
        bars.append(_volume(forming, colour, 0.25, "volume forming", width))
    if parts["incomplete"].num_rows:
        bars.append(_volume(parts["incomplete"], UNKNOWN, 0.45, "volume incomplete", width))
    return bars


def _rising(table: pa.Table) -> bool:
    """Whether the last candle of ``table`` closed at or above its open (Decimals, not floats)."""
    close, open_ = table["close"][-1].as_py(), table["open"][-1].as_py()
    return close is None or open_ is None or close >= open_


def _last_price(table: pa.Table, view: View) -> dict[str, list[dict[str, object]]]:
    """A dotted line at the last price across the chart, and its value in a label on the price axis."""
    priced = table.filter(pc.is_valid(table["close"]))  # the last price is the last one known
    if priced.num_rows == 0:
        return {"shapes": [], "annotations": []}
    colour = f"#{view.bull_line}" if _rising(priced) else f"#{view.bear_line}"
    text = plain(priced["close"][-1].as_py())
    line = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": text, "y1": text,
            "line": {"color": colour, "width": 1, "dash": "dot"}, "name": "last price"}  # fmt: skip
    label = {"xref": "paper", "x": 1, "xanchor": "left", "yref": "y", "y": text, "text": text,
             "showarrow": False, "font": {"color": "#ffffff", "size": 11}, "bgcolor": colour,
             "borderpad": 2, "name": "last price"}  # fmt: skip
    return {"shapes": [line], "annotations": [label]}


def _gap_runs(gaps: pa.Table, width: timedelta) -> list[tuple[datetime, datetime]]:
    """Runs of consecutive buckets without prices, as (first open, last open)."""
    runs: list[tuple[datetime, datetime]] = []
    for opened in gaps["open_time"].to_pylist():
        if runs and opened - runs[-1][1] == width:
            runs[-1] = (runs[-1][0], opened)
        else:
            runs.append((opened, opened))
    return runs


def _gaps(gaps: pa.Table, view: View) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(traces, shapes) for the buckets without prices: a band across the price pane over each run of them,
    and a marker on the volume pane's baseline that names them in the legend and the hover."""
    if gaps.num_rows == 0:
        return [], []
    width = BY_NAME[view.interval].length
    bands = [
        {
            "type": "rect",
            "xref": "x",
            "yref": "y domain",
            "x0": _time_text(first - width / 2),
            "x1": _time_text(last + width / 2),
            "y0": 0,
            "y1": 1,
            "fillcolor": GAP_FILL,
            "line": {"width": 0},
            "layer": "below",
            "name": GAP,
        }
        for first, last in _gap_runs(gaps, width)
    ]
    marker = {
        "type": "scatter",
        "mode": "markers",
        "x": _times(gaps["open_time"]),
        "y": np.zeros(gaps.num_rows, dtype=int),
        "marker": {"symbol": "x-thin-open", "size": 8, "color": UNKNOWN, "line": {"color": UNKNOWN, "width": 1}},
        "hovertext": np.full(gaps.num_rows, GAP_NOTE),
        "hoverinfo": "x+text",
        "name": GAP,
        "showlegend": True,
        "xaxis": "x2",
        "yaxis": "y2",
    }
    return [marker], bands


def _time_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _layout(view: View) -> dict[str, object]:
    colours = THEMES[view.theme]
    axis = {"showgrid": False, "zeroline": False, "showline": False, "color": colours["text"]}
    spikes = {"showspikes": True, "spikemode": "across", "spikesnap": "cursor", "spikethickness": 1,
              "spikedash": "dot", "spikecolor": colours["crosshair"]}  # fmt: skip
    time_axis = {**axis, **spikes, "type": "date", "rangeslider": {"visible": False}}
    return {
        "paper_bgcolor": colours["background"],
        "plot_bgcolor": colours["background"],
        "font": {"color": colours["text"], "size": 12},
        "hoverlabel": {"bgcolor": colours["hover"], "font": {"color": colours["text"]}},
        "dragmode": "pan",
        "hovermode": "x",
        "spikedistance": -1,  # the crosshair follows the cursor anywhere on the plot, not only near a candle
        "hoverdistance": -1,
        "margin": {"l": 8, "r": PRICE_AXIS_WIDTH, "t": 32, "b": 40},  # room for two-line date labels
        "height": 560,
        "showlegend": True,
        "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.0, "yanchor": "bottom"},
        "barmode": "overlay",  # the volume traces share the x axis without shifting each other
        # Zoom and pan survive the live refreshes: Plotly keeps the user's view while this stays the same.
        "uirevision": f"{view.symbol}/{view.interval}/{view.range}/{view.start}/{view.end}",
        # Candles above, volume below, one time axis (the bottom one shows the labels).
        "xaxis": {**time_axis, "anchor": "y", "matches": "x2", "showticklabels": False},
        "xaxis2": {**time_axis, "anchor": "y2"},
        "yaxis": {**axis, **spikes, "side": "right", "domain": [0.24, 1.0], "anchor": "x"},
        "yaxis2": {**axis, "side": "right", "domain": [0.0, 0.22], "anchor": "x2", "showticklabels": False},
    }


def split(candles: pa.Table) -> dict[str, pa.Table]:
    """The candles as drawn: closed and complete, forming (complete so far), incomplete (with prices),
    and gaps (no prices: nothing known)."""
    priced = pc.is_valid(candles["close"])
    complete = pc.fill_null(candles["is_complete"], False)
    closed = pc.fill_null(candles["is_closed"], False)
    whole = pc.and_(priced, complete)
    return {
        "closed": candles.filter(pc.and_(whole, closed)),
        "forming": candles.filter(pc.and_(whole, pc.invert(closed))),
        "incomplete": candles.filter(pc.and_(priced, pc.invert(complete))),
        "gaps": candles.filter(pc.invert(priced)),
    }


def candle_figure(candles: pa.Table, view: View) -> go.Figure:
    """Candles (closed, and the forming and incomplete ones marked) over volume bars, buckets without
    prices shaded, for ``view``'s colours and theme."""
    parts = split(candles)
    data = [_candles(parts["closed"], view, f"{view.symbol} {view.interval}")]
    if parts["forming"].num_rows:
        data.append(_candles(parts["forming"], view, FORMING, "forming: not closed yet"))
    if parts["incomplete"].num_rows:
        data.append(_candles(parts["incomplete"], view, INCOMPLETE, INCOMPLETE_NOTE))
    data += _volumes(parts, view)
    markers, bands = _gaps(parts["gaps"], view)
    data += markers
    price = _last_price(candles, view)
    layout = {**_layout(view), **price, "shapes": bands + price["shapes"]}
    # Validated, as Plotly documents it: for 10,000 candles it costs about 40 ms more than the
    # undocumented go.Figure(..., _validate=False), a few ms for the default view (numpy arrays are
    # checked whole), well within the 2 s refresh.
    return go.Figure(data=data, layout=layout)
