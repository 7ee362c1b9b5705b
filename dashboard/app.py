"""cryptoflow's dashboard: live candles from the marts, customisable and shareable, honest about data health.

Run it with ``python -m include.cli dashboard`` (``make up`` starts it on http://127.0.0.1:8501).

The URL's query string is the view (dashboard/view.py): the sidebar's controls write it, and each
run reads it, so a link reproduces what was on screen. The chart is the first thing the page
computes and sends (the header and the health panel fill their places after it), and one fragment
re-runs header, chart and health every REFRESH_SECONDS (``st.fragment(run_every=...)``), not the
whole page, so the controls do not flicker and Plotly's ``uirevision`` keeps the user's zoom and pan.
Below them, the alerts (dashboard/alerts.py): open incidents, the day's alerts with their deliveries,
and the market rules, with a form that adds a rule to the lake (never to the warehouse).

Reads go through dashboard/queries.py: on DuckDB the published snapshot (never the warehouse file a
load holds locked), on Snowflake ``st.connection("snowflake")`` with the reader role of its
secrets. The candles and the header's 24 h ticker then get the live edge (dashboard/live_edge.py):
the lake's trades the warehouse has not published yet, merged on. The freshness target is a trade
on the chart within 15 s at p95 (8 s at p50) of its exchange time; the stream flushes every 5 s, so
the chart refreshes every 2 s (a refresh of the default view costs tens of ms: bench/dashboard_page.py).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import duckdb
import pyarrow as pa
import streamlit as st

from dashboard import alerts
from dashboard import health as judged
from dashboard.chart import PLOTLY_CONFIG, candle_figure, plain
from dashboard.live_edge import LiveCandles, with_live_edge
from dashboard.queries import (
    Health,
    MarketQueries,
    NoData,
    QueryRefused,
    Ticker24h,
    ticker_of,
)
from dashboard.view import DEFAULT_COLOURS, RANGES, THEMES, View, parse_view
from include.candles import INTERVAL_NAMES
from include.config import Settings, load_settings
from include.lake.store import ObjectStore, open_lake

REFRESH_SECONDS = 2
WHAT_TO_RUN = (
    "Start the pipeline with `make up` (it loads, transforms and publishes every few seconds), or run "
    "`python -m include.cli load` then `python -m include.cli transform` (the transform publishes the "
    "dashboard's snapshot)."
)
LEVEL_COLOURS = {judged.OK: "green", judged.WARNING: "orange", judged.FAILING: "red", judged.NOT_YET: "gray"}
CHECKS = {  # the health table's name of each section of findings
    "freshness": "Last closed candle",
    "completeness": "Incomplete 1m candles",
    "pipeline": "Pipeline",
    "gaps": "Gap repair",
    "audit": "Exchange audit",
    "streams": "Stream",
}
RANGE_LABELS = {"auto": "Auto", "max": "Max"}


def _snowflake_queries(exchange: str) -> MarketQueries:
    """Snowflake's marts through st.connection("snowflake"): account, user and the reader role from its
    secrets ([connections.snowflake]). Results are cached for less than a refresh, so every refresh reads."""
    connection = st.connection("snowflake")

    def run(sql: str, params: list[object]) -> object:
        return connection.query(sql, params=params, ttl=REFRESH_SECONDS / 2, show_spinner=False)

    return MarketQueries.snowflake(run, exchange)


def market_queries(settings: Settings) -> MarketQueries:
    if settings.warehouse == "snowflake":
        return _snowflake_queries(settings.exchange)
    return MarketQueries.duckdb_snapshot(settings.snapshot_path)


@st.cache_resource(show_spinner=False)
def lake_of(url: str) -> ObjectStore:
    """The lake the speed layer reads, once per server process (an S3 client is slow to make)."""
    return open_lake(url)


# The controls: each writes the URL, then the page re-reads it ---------------------------------------


def _write_view(view: View) -> None:
    st.query_params.from_dict(view.query())


def _on_control(field: str) -> None:
    view: View = st.session_state["_view"]
    value = st.session_state[field]
    if field in DEFAULT_COLOURS:
        value = str(value).lstrip("#").lower()
    if field == "range":  # a range button replaces a date range; unselecting it returns to the default
        view = replace(view, range=value or "auto", start=None, end=None)
    elif field == "dates":
        if len(value) != 2:  # the second day is not picked yet
            return
        view = replace(view, start=value[0], end=value[1])
    else:
        view = replace(view, **{field: value})
    _write_view(view)


def _preset(view: View) -> None:
    """The controls show the URL's view (set before they are drawn; the URL is the one source).

    Only what differs is set: a widget state set by code as well as by a default is worth a warning."""
    st.session_state["_view"] = view
    wanted: dict[str, object] = {field: getattr(view, field) for field in ("symbol", "interval", "theme")}
    wanted.update({field: f"#{getattr(view, field)}" for field in DEFAULT_COLOURS})
    wanted["range"] = None if view.window else view.range
    wanted["dates"] = (view.start, view.end) if view.window else ()
    for field, value in wanted.items():
        current = st.session_state.get(field)
        if (tuple(current) if isinstance(current, list | tuple) else current) != value:
            st.session_state[field] = value


def controls(view: View, symbols: list[str]) -> None:
    _preset(view)
    sidebar = st.sidebar
    sidebar.selectbox("Symbol", symbols, key="symbol", on_change=_on_control, args=("symbol",))
    sidebar.segmented_control(
        "Interval", list(INTERVAL_NAMES), key="interval", required=True, on_change=_on_control, args=("interval",)
    )
    sidebar.segmented_control(
        "Range",
        list(RANGES),
        key="range",
        format_func=lambda name: RANGE_LABELS.get(name, name),
        on_change=_on_control,
        args=("range",),
        help="How much history to load: Auto is the newest 300 candles, Max the newest 10,000.",
    )
    # No value=: _preset put the URL's dates (or none) in its session state, the widget's one source.
    sidebar.date_input("Dates (UTC)", key="dates", on_change=_on_control, args=("dates",), format="YYYY-MM-DD")
    bull, bear = sidebar.columns(2)
    bull.color_picker("Bull fill", key="bull", on_change=_on_control, args=("bull",))
    bull.color_picker("Bull border/wick", key="bull_line", on_change=_on_control, args=("bull_line",))
    bear.color_picker("Bear fill", key="bear", on_change=_on_control, args=("bear",))
    bear.color_picker("Bear border/wick", key="bear_line", on_change=_on_control, args=("bear_line",))
    sidebar.segmented_control(
        "Chart theme", list(THEMES), key="theme", required=True, on_change=_on_control, args=("theme",)
    )
    sidebar.caption("Every choice is in the address bar: copy the link to share this view.")


# The live part: chart first, then the header and the health panel around it ------------------------


def _number(value: Decimal) -> str:
    """An exact decimal with thousands separators and no trailing zeros (``60,012.5``)."""
    whole, _, fraction = plain(value).partition(".")
    sign = "-" if whole.startswith("-") else ""
    grouped = f"{int(whole.lstrip('-') or 0):,}"
    return f"{sign}{grouped}.{fraction}" if fraction else f"{sign}{grouped}"


def header(row: st.delta_generator.DeltaGenerator, ticker: Ticker24h | None, view: View, now: datetime) -> None:
    """The symbol's last price and 24 h change, high, low and volume, and its last trade's age, as metrics."""
    label = f"{view.symbol} · {view.interval}"
    if ticker is None:
        row.metric(label, "no price", help="No 1m candle of the last 24 h has a price.", width="content")
        return
    sign = "+" if ticker.change >= 0 else ""
    change = f"{sign}{_number(ticker.change)} ({sign}{ticker.change_percent}%)"  # red when it starts with "-"
    row.metric(label, _number(ticker.last_price), change, help="Last price, and its change over 24 h", width="content")
    for name, value in (("high", ticker.high), ("low", ticker.low), ("volume", ticker.volume)):
        row.metric(f"24 h {name}", _number(value), width="content")
    traded = ticker.last_trade_time
    age = judged.age_text(None if traded is None else max(now - traded, timedelta(0)))  # the exchange's clock may lead
    when = "before the last 24 h" if traded is None else f"{traded:%Y-%m-%d %H:%M:%S} UTC"
    row.metric("Last trade", age, help=f"The newest trade on the chart: {when}", width="content")


def _health_table(facts: Health, findings: list[judged.Finding]) -> pa.Table:
    """One row per finding (the worst first), then the snapshot's time and the exchange, unjudged."""
    published = "live (Snowflake)" if facts.published_at is None else f"{facts.published_at:%Y-%m-%d %H:%M:%S}Z"
    rows = [([f.level], CHECKS[f.section], f.subject, f.value) for f in findings]
    rows += [([], "Pipeline", "snapshot", published), ([], "Pipeline", "exchange", facts.exchange or "?")]
    status, check, subject, value = zip(*rows, strict=True)
    return pa.table({"Status": status, "Check": check, "Subject": subject, "Value": value})


def health_panel(facts: Health, now: datetime) -> None:
    """Every check in one table, the worst first, its status in its colour; badges count what is wrong."""
    findings = judged.judge(facts, now)
    title = st.container(horizontal=True, vertical_alignment="center")
    title.subheader("Pipeline health", anchor=False, width="content")
    failing, warnings = (sum(f.level == level for f in findings) for level in (judged.FAILING, judged.WARNING))
    if failing:
        title.badge(f"{failing} failing", color=LEVEL_COLOURS[judged.FAILING])
    if warnings:
        title.badge(f"{warnings} warning{'s' if warnings > 1 else ''}", color=LEVEL_COLOURS[judged.WARNING])
    if not failing and not warnings:
        title.badge("all fine", color=LEVEL_COLOURS[judged.OK])
    columns = {  # the status first: on a phone the table is wider than the screen
        "Status": st.column_config.MultiselectColumn(
            options=judged.LEVELS, color=[LEVEL_COLOURS[level] for level in judged.LEVELS], width=80
        ),
        "Check": st.column_config.TextColumn(width=160),
        "Subject": st.column_config.TextColumn(width=110),
        "Value": st.column_config.TextColumn(width="large"),
    }
    st.dataframe(_health_table(facts, findings), hide_index=True, height="content", column_config=columns)
    if facts.audit.mismatches:
        with st.expander(f"Audit mismatches ({facts.audit.mismatched or len(facts.audit.mismatches)})"):
            st.dataframe(
                pa.Table.from_pylist([asdict(item) for item in facts.audit.mismatches]),
                hide_index=True,
                column_config={"open_time": st.column_config.DatetimeColumn("open time (UTC)")},
            )


def load_candles(queries: MarketQueries, lake: ObjectStore, view: View) -> tuple[LiveCandles, str | None]:
    """The view's candles and 1m candles, the live edge merged on; and why the live edge is missing, if
    it is (the lake unreadable: the marts' candles are shown as they are)."""
    start, end = view.window or (None, None)
    marts = queries.edge(view.symbol, view.interval, start, end, limit=view.candle_limit)
    try:
        return with_live_edge(marts, lake), None
    except (OSError, ValueError, RuntimeError) as error:  # LakeError, a file gone or unreadable
        return LiveCandles(marts.candles, marts.minutes, 0), " ".join(str(error).split())[:200]


def _sandbox_banner(slot: st.delta_generator.DeltaGenerator, exchange: str | None) -> None:
    if exchange == "sandbox":
        slot.info(
            "Sandbox data: these candles come from the offline sandbox exchange (EXCHANGE=sandbox), not from Binance.",
            icon=":material/science:",
        )


def _unreadable(error: Exception) -> None:
    st.error("The dashboard could not read the data:", icon=":material/error:")
    st.code(" ".join(str(error).split()), language=None, wrap_lines=True)  # as it is: no Markdown


@st.fragment(run_every=REFRESH_SECONDS)
def live(queries: MarketQueries, lake: ObjectStore, view: View) -> None:
    banner, top = st.empty(), st.container(horizontal=True, gap="small")  # five metrics on one line at 1280 px
    # Drawn first from what the last refresh saw, so a refresh never removes it and moves the chart;
    # the health facts below confirm or change it.
    _sandbox_banner(banner, st.session_state.get("_exchange"))
    try:
        loaded, lake_error = load_candles(queries, lake, view)
        if loaded.candles.num_rows == 0:
            st.info(f"No {view.interval} candles of {view.symbol} in this range: pick another range or dates.")
        else:
            figure = candle_figure(loaded.candles, view)
            st.plotly_chart(figure, key="chart", config=PLOTLY_CONFIG, theme=None)
        if lake_error:  # text, not Markdown: the error names keys and paths
            st.text(
                f"Live edge unavailable (the lake could not be read: {lake_error}); the warehouse's candles are shown."
            )
        elif loaded.off:
            st.caption(f"Live edge off: {loaded.off}.")
        header(top, ticker_of(view.symbol, loaded.minutes), view, datetime.now(UTC))
        facts = queries.health()
    except NoData as error:
        st.info(f"{error}\n\n{WHAT_TO_RUN}")
        return
    except (QueryRefused, duckdb.Error) as error:  # e.g. a snapshot replaced by something unreadable
        _unreadable(error)
        return
    if facts.exchange != st.session_state.get("_exchange"):
        st.session_state["_exchange"] = facts.exchange
        banner.empty()
        _sandbox_banner(banner, facts.exchange)
    health_panel(facts, datetime.now(UTC))


@st.fragment(run_every=REFRESH_SECONDS)
def waiting_for_candles(settings: Settings) -> None:
    """Until the warehouse has published candles: says why nothing is shown, and reloads the page once
    they are there (a page opened right after ``make up`` shows the chart without a reload)."""
    try:
        symbols = market_queries(settings).symbols()
    except NoData as error:
        st.info(f"{error}\n\n{WHAT_TO_RUN}")
        return
    except duckdb.Error as error:
        _unreadable(error)
        return
    if symbols:
        st.rerun(scope="app")
    st.info(f"The warehouse holds no candles yet: they appear after the first load and transform.\n\n{WHAT_TO_RUN}")


def main() -> None:
    # No page_icon: a Material icon as the favicon is fetched from fonts.gstatic.com, and these machines are offline.
    st.set_page_config(page_title="cryptoflow", layout="wide")
    try:
        settings = load_settings()
        lake = lake_of(settings.lake_url)
    except ValueError as error:  # a ConfigError, or a LAKE_URL open_lake cannot open
        st.error(f"A setting is wrong: {error}")
        return
    try:
        queries = market_queries(settings)
        symbols = queries.symbols()
    except (NoData, duckdb.Error):
        symbols = []
    if not symbols:
        waiting_for_candles(settings)
        return
    params = st.query_params.to_dict()
    view, notices = parse_view(params, symbols, settings.symbols[0])
    if params != view.query():  # the URL shows exactly what is on screen (refused values replaced)
        _write_view(view)
    for notice in notices:
        st.warning(notice, icon=":material/block:")
    controls(view, symbols)
    live(queries, lake, view)
    alerts.overview(queries)  # below the chart and the health panel: they come first
    alerts.rules(settings, lake)


main()
