"""What the page shows, as it lives in the URL: ``?symbol=BTCUSDT&interval=5m&range=1d&bull=26a69a&...``.

The query string is the one source of the view, so a link reproduces it. Every value is checked
against an allowlist or a strict pattern before it is used anywhere; a value that fails is refused
with a one-line reason naming the key, and the default is used in its place, so a hostile link
(SQL fragments, unknown symbols, 10,000-character strings) still renders the page.

Plain dicts in and out (``st.query_params`` is dict-like): no Streamlit here, so it is testable alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta

from dashboard.queries import MAX_CANDLES
from include.candles import BY_NAME, INTERVAL_NAMES

# The range buttons: how much history the chart loads and shows, ending at the newest candle.
# "auto" is the newest AUTO_CANDLES candles of any interval (a readable chart, fast to draw);
# "max" is as many as one read returns (queries.MAX_CANDLES). Spans are converted to candle counts.
RANGES: dict[str, timedelta | None] = {
    "auto": None,
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "1d": timedelta(days=1),
    "1w": timedelta(weeks=1),
    "30d": timedelta(days=30),
    "max": None,
}
AUTO_CANDLES = 300
# The chart's themes, TradingView's colours: background, text, crosshair, hover label. The page around
# the chart takes its theme from dashboard/.streamlit/config.toml.
THEMES = {
    "dark": {"background": "#131722", "text": "#d1d4dc", "crosshair": "#758696", "hover": "#1e222d"},
    "light": {"background": "#ffffff", "text": "#131722", "crosshair": "#9598a1", "hover": "#f0f3fa"},
}
# TradingView's default candle colours.
DEFAULT_COLOURS = {"bull": "26a69a", "bull_line": "26a69a", "bear": "ef5350", "bear_line": "ef5350"}
KEYS = ("symbol", "interval", "range", "start", "end", "bull", "bull_line", "bear", "bear_line", "theme")
MAX_DATE_RANGE = timedelta(days=366)
EARLIEST_DATE, LATEST_DATE = date(2009, 1, 3), date(2100, 1, 1)  # no market data outside these
_COLOUR = re.compile(r"[0-9a-fA-F]{6}")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SHOWN = re.compile(r"[^A-Za-z0-9_.:+-]")
MAX_SHOWN = 40


@dataclass(frozen=True)
class View:
    symbol: str
    interval: str = "1m"
    range: str = "auto"
    start: date | None = None  # a date range, both days included; when set, it replaces ``range``
    end: date | None = None
    bull: str = DEFAULT_COLOURS["bull"]  # 6 lower-case hex digits, no '#'
    bull_line: str = DEFAULT_COLOURS["bull_line"]
    bear: str = DEFAULT_COLOURS["bear"]
    bear_line: str = DEFAULT_COLOURS["bear_line"]
    theme: str = "dark"

    @property
    def window(self) -> tuple[datetime, datetime] | None:
        """The date range as [start, end) in UTC, or None when a range button decides."""
        if self.start is None or self.end is None:
            return None
        start = datetime.combine(self.start, datetime.min.time(), UTC)
        return start, datetime.combine(self.end, datetime.min.time(), UTC) + timedelta(days=1)

    @property
    def candle_limit(self) -> int:
        """How many of the newest candles to load: the range in candles of this interval, at most MAX_CANDLES."""
        span = RANGES.get(self.range)
        if self.window is not None or self.range == "max":
            return MAX_CANDLES
        if span is None:
            return AUTO_CANDLES
        return max(1, min(MAX_CANDLES, -(-span // BY_NAME[self.interval].length)))

    def query(self) -> dict[str, str]:
        """The query parameters that reproduce this view (every choice, in a fixed order)."""
        values = {key: value for key, value in asdict(self).items() if value is not None}
        if self.window is not None:  # the dates decide, not a range button
            del values["range"]
        return {key: _text(values[key]) for key in KEYS if key in values}


def _text(value: object) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def shown(value: str) -> str:
    """A refused value as it is safe to show on the page: short, and no markup (``?`` for anything else)."""
    return _SHOWN.sub("?", value[:MAX_SHOWN]) + ("…" if len(value) > MAX_SHOWN else "")


def _one(params: Mapping[str, str | Sequence[str]], key: str) -> str | None:
    """The value of ``key``: the last one when a key is repeated (as st.query_params reads it)."""
    value = params.get(key)
    if value is None or isinstance(value, str):
        return value
    return value[-1] if value else None


def _choice(key: str, value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        listed = f" ({', '.join(allowed)})" if len(allowed) <= 10 else ""
        raise ValueError(f"{key}={shown(value)!r} is not {what}{listed}")
    return value


def _colour(key: str, value: str) -> str:
    if not _COLOUR.fullmatch(value):
        raise ValueError(f"{key}={shown(value)!r} is not a colour of 6 hex digits like 26a69a")
    return value.lower()


def _date(key: str, value: str) -> date:
    try:
        if not _ISO_DATE.fullmatch(value):
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{key}={shown(value)!r} is not a date like 2026-11-24") from None
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise ValueError(f"{key}={shown(value)!r} is outside {EARLIEST_DATE}..{LATEST_DATE}")
    return day


def _dates(params: Mapping[str, str | Sequence[str]], notices: list[str]) -> dict[str, date]:
    """start and end together, start not after end, at most MAX_DATE_RANGE apart; else neither."""
    texts = {key: _one(params, key) for key in ("start", "end")}
    if not any(texts.values()):
        return {}
    if not all(texts.values()):
        given, missing = ("start", "end") if texts["start"] else ("end", "start")
        notices.append(
            f"Ignored {given}={shown(texts[given] or '')!r} without {missing}; showing the range buttons' choice."
        )
        return {}
    try:
        days = {key: _date(key, text or "") for key, text in texts.items()}
    except ValueError as error:
        notices.append(f"Ignored {error}; showing the range buttons' choice.")
        return {}
    if days["start"] > days["end"]:
        notices.append(f"Ignored start={days['start']} after end={days['end']}; showing the range buttons' choice.")
        return {}
    if days["end"] - days["start"] >= MAX_DATE_RANGE:
        notices.append(
            f"Ignored a date range longer than {MAX_DATE_RANGE.days} days; showing the range buttons' choice."
        )
        return {}
    return days


def parse_view(
    params: Mapping[str, str | Sequence[str]], symbols: Sequence[str], default_symbol: str | None = None
) -> tuple[View, list[str]]:
    """The view a query string asks for, and one notice per refused value (the default used instead).

    ``symbols`` is the allowlist (every symbol in the marts); ``default_symbol`` the one shown when
    none is asked for (else the first of ``symbols``).
    """
    fallback = default_symbol if default_symbol in symbols else (symbols[0] if symbols else "")
    view, notices = View(symbol=fallback), []
    checks = {
        "symbol": lambda value: _choice("symbol", value, symbols, "a symbol in the marts"),
        "interval": lambda value: _choice("interval", value, INTERVAL_NAMES, "an interval"),
        "range": lambda value: _choice("range", value, tuple(RANGES), "a range"),
        "theme": lambda value: _choice("theme", value, tuple(THEMES), "a theme"),
        **{key: (lambda value, key=key: _colour(key, value)) for key in DEFAULT_COLOURS},
    }
    chosen: dict[str, object] = {}
    for key, check in checks.items():
        value = _one(params, key)
        if value is None:
            continue
        try:
            chosen[key] = check(value)
        except ValueError as error:
            notices.append(f"Ignored {error}; showing {getattr(view, key)!s}.")
    chosen.update(_dates(params, notices))
    return replace(view, **chosen), notices
