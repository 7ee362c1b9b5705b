"""The candlestick chart as a Plotly figure, TradingView-like: candles over volume, crosshair, last price.

Pure (no Streamlit): the benchmark times ``candle_figure`` on 10,000 candles straight from the query
module. Prices and volumes go to Plotly as exact decimal strings made by Arrow from the DECIMAL
columns (``pc.cast(decimal, string)``), never through a Python float; the browser parses them for
drawing, and the hover shows the strings themselves. Work is vectorised in Arrow: no Python loop
per candle.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.compute as pc

from dashboard.view import View

# Plotly's rangeselector: quick zooms inside what is loaded (the sidebar's range decides what is loaded).
ZOOM_BUTTONS = (
    {"count": 1, "label": "1h", "step": "hour", "stepmode": "backward"},
    {"count": 6, "label": "6h", "step": "hour", "stepmode": "backward"},
    {"count": 1, "label": "1d", "step": "day", "stepmode": "backward"},
    {"count": 7, "label": "1w", "step": "day", "stepmode": "backward"},
    {"step": "all", "label": "all"},
)
# Passed to st.plotly_chart: wheel zooms, drag pans (layout.dragmode), double-click resets.
PLOTLY_CONFIG = {
    "scrollZoom": True,
    "doubleClick": "reset",
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
}
# TradingView's chart colours: background, text, crosshair.
THEMES = {
    "dark": {"background": "#131722", "text": "#d1d4dc", "crosshair": "#758696", "hover": "#1e222d"},
    "light": {"background": "#ffffff", "text": "#131722", "crosshair": "#9598a1", "hover": "#f0f3fa"},
}
PRICE_AXIS_WIDTH = 72  # px on the right for the price labels and the last-price label
FORMING = "forming (not closed)"
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


def _hover(prices: dict[str, pa.Array]) -> np.ndarray:
    """One "O .. H .. L .. C .. V .." text per candle, from the exact strings."""
    parts = []
    for label, name in (("O", "open"), ("H", "high"), ("L", "low"), ("C", "close"), ("V", "volume")):
        parts += [pa.scalar(f"{label} "), prices[name], pa.scalar("<br>" if name != "volume" else "")]
    return _array(pc.binary_join_element_wise(*parts, ""))


def _candles(table: pa.Table, view: View, name: str, opacity: float) -> dict[str, object]:
    prices = {column: decimal_strings(table[column]) for column in ("open", "high", "low", "close", "volume")}
    return {
        "type": "candlestick",
        "x": _times(table["open_time"]),
        "open": _array(prices["open"]),
        "high": _array(prices["high"]),
        "low": _array(prices["low"]),
        "close": _array(prices["close"]),
        "hovertext": _hover(prices),
        "hoverinfo": "x+text",
        "name": name,
        "opacity": opacity,
        "increasing": {"fillcolor": f"#{view.bull}", "line": {"color": f"#{view.bull_line}", "width": 1}},
        "decreasing": {"fillcolor": f"#{view.bear}", "line": {"color": f"#{view.bear_line}", "width": 1}},
        "showlegend": name == FORMING,  # the forming candle is named in the legend; closed ones need no key
        "xaxis": "x",
        "yaxis": "y",
    }


def _volume(table: pa.Table, colour: str, opacity: float, name: str) -> dict[str, object]:
    return {
        "type": "bar",
        "x": _times(table["open_time"]),
        "y": _array(decimal_strings(table["volume"])),
        "marker": {"color": f"#{colour}", "opacity": opacity, "line": {"width": 0}},
        "name": name,
        "hoverinfo": "skip",  # the candle's hover already shows V
        "showlegend": False,
        "xaxis": "x2",
        "yaxis": "y2",
    }


def _volumes(closed: pa.Table, forming: pa.Table, view: View) -> list[dict[str, object]]:
    """Volume bars coloured by direction, one trace per colour (a colour per bar costs a check per bar);
    the forming candle's bar fainter, like its candle."""
    rising = pc.fill_null(pc.greater_equal(closed["close"], closed["open"]), True)
    bars = [
        _volume(closed.filter(rising), view.bull, 0.55, "volume up"),
        _volume(closed.filter(pc.invert(rising)), view.bear, 0.55, "volume down"),
    ]
    if forming.num_rows:
        bars.append(_volume(forming, view.bull if _rising(forming) else view.bear, 0.25, "volume forming"))
    return bars


def _rising(table: pa.Table) -> bool:
    """Whether the last candle of ``table`` closed at or above its open (Decimals, not floats)."""
    close, open_ = table["close"][-1].as_py(), table["open"][-1].as_py()
    return close is None or open_ is None or close >= open_


def _last_price(table: pa.Table, view: View, last_price: Decimal | None) -> dict[str, list[dict[str, object]]]:
    """A dotted line at the last price across the chart, and its value in a label on the price axis."""
    if table.num_rows == 0:
        return {"shapes": [], "annotations": []}
    price = last_price if last_price is not None else table["close"][-1].as_py()
    if price is None:
        return {"shapes": [], "annotations": []}
    colour = f"#{view.bull_line}" if _rising(table) else f"#{view.bear_line}"
    text = plain(price)
    line = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": text, "y1": text,
            "line": {"color": colour, "width": 1, "dash": "dot"}, "name": "last price"}  # fmt: skip
    label = {"xref": "paper", "x": 1, "xanchor": "left", "yref": "y", "y": text, "text": text,
             "showarrow": False, "font": {"color": "#ffffff", "size": 11}, "bgcolor": colour,
             "borderpad": 2, "name": "last price"}  # fmt: skip
    return {"shapes": [line], "annotations": [label]}


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
        "bargap": 0.1,
        "barmode": "overlay",  # the volume traces share the x axis without shifting each other
        # Zoom and pan survive the live refreshes: Plotly keeps the user's view while this stays the same.
        "uirevision": f"{view.symbol}/{view.interval}/{view.range}/{view.start}/{view.end}",
        # Candles above, volume below, one time axis (the bottom one shows the labels).
        "xaxis": {
            **time_axis,
            "anchor": "y",
            "matches": "x2",
            "showticklabels": False,
            "rangeselector": {
                "buttons": list(ZOOM_BUTTONS),
                "x": 0,
                "y": 1.0,
                "yanchor": "bottom",
                "font": {"size": 11, "color": "#131722"},
            },
        },
        "xaxis2": {**time_axis, "anchor": "y2"},
        "yaxis": {**axis, **spikes, "side": "right", "domain": [0.24, 1.0], "anchor": "x"},
        "yaxis2": {**axis, "side": "right", "domain": [0.0, 0.22], "anchor": "x2", "showticklabels": False},
    }


def candle_figure(candles: pa.Table, view: View, last_price: Decimal | None) -> go.Figure:
    """Candles (closed, and the forming one marked) over volume bars, for ``view``'s colours and theme."""
    forming_mask = pc.invert(pc.fill_null(candles["is_closed"], False))
    closed, forming = candles.filter(pc.invert(forming_mask)), candles.filter(forming_mask)
    data = [_candles(closed, view, f"{view.symbol} {view.interval}", 1.0)]
    if forming.num_rows:
        data.append(_candles(forming, view, FORMING, 0.5))
    data += _volumes(closed, forming, view)
    layout = {**_layout(view), **_last_price(candles, view, last_price)}
    # Built whole from plain values the tests check, without Plotly's per-element validation (10,000
    # candles: most of the time) and without its deep copies of each array.
    return go.Figure(data=data, layout=layout, _validate=False)
