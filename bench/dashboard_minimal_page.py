"""The dashboard benchmark's baseline: a minimal Streamlit page with one Plotly candlestick chart.

It shows the candles the dashboard shows by default (the benchmark passes them in the query:
``?symbol=BTCUSDT&interval=1m&limit=N``, the newest N), read through the same query module from the
same published snapshot, and nothing else: no header, no controls, no health panel. Prices go to
Plotly as exact decimal strings, as the dashboard sends them. Run by ``bench/dashboard.py`` with
``streamlit run``, from the repository's root.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# `streamlit run bench/dashboard_minimal_page.py` puts bench/ first on the path, where bench/dashboard.py
# would shadow the dashboard package: the repository's root goes before it.
sys.path.insert(0, str(REPO_ROOT))

import plotly.graph_objects as go  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import streamlit as st  # noqa: E402

from dashboard.queries import MarketQueries  # noqa: E402
from include.config import load_settings  # noqa: E402


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
