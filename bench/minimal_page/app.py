"""The dashboard benchmark's baseline: a minimal Streamlit page with one Plotly candlestick chart.

It shows the candles the dashboard shows by default (the benchmark passes them in the query:
``?symbol=BTCUSDT&interval=1m&limit=N``, the newest N), read through the same query module from the
same published snapshot, and nothing else: no header, no controls, no health panel. Prices go to
Plotly as exact decimal strings, as the dashboard sends them. Run by ``bench/dashboard_page.py`` with
``python -m streamlit run`` in the repository's root, which puts the root on ``sys.path`` after this
folder (a folder of its own: ``streamlit run`` puts the script's folder first, where no module of
the project may stand in for a package).
"""

from __future__ import annotations

import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

from dashboard.queries import MarketQueries
from include.config import load_settings


def as_text(candles: pa.Table, column: str) -> list[str]:
    return pc.cast(candles[column], pa.string()).to_pylist()


def page() -> None:
    query = st.query_params
    candles = MarketQueries.duckdb_snapshot(load_settings().snapshot_path).candles(
        query.get("symbol", "BTCUSDT"), query.get("interval", "1m"), limit=int(query.get("limit", "10000"))
    )
    chart = go.Candlestick(
        x=candles["open_time"].to_pylist(),
        open=as_text(candles, "open"),
        high=as_text(candles, "high"),
        low=as_text(candles, "low"),
        close=as_text(candles, "close"),
    )
    st.plotly_chart(go.Figure(chart), key="chart")


page()
