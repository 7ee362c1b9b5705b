"""The stream benchmark's sender (``bench/sender.py``): a real WebSocket on the worker's own URL,
serving Binance combined-stream trade frames with µs times, every id once, in order."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from websockets.exceptions import InvalidStatus

from include.ingest.parse import CombinedTrade, decode, validate
from include.ingest.stream import stream_names, stream_url
from tests.support.net import ws_client
from tests.support.paths import REPO_ROOT
from tests.support.processes import process_group

FIRST_ID, TRADES = 987_654_321, 250


def test_the_sender_serves_the_workers_url_with_binance_trade_frames() -> None:
    argv = [sys.executable, "-m", "bench.sender", "--trades", str(TRADES), "--first-id", str(FIRST_ID)]
    with process_group(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True) as sender:
        assert sender.stdout is not None
        base = f"ws://127.0.0.1:{json.loads(sender.stdout.readline())['port']}"
        # Milliseconds are not what the worker asks for: refused, and not counted as the connection.
        with pytest.raises(InvalidStatus) as refused, ws_client(f"{base}/stream?streams=btcusdt@trade"):
            pass
        assert refused.value.response.status_code == 400
        with ws_client(stream_url(base, stream_names(["BTCUSDT"]))) as ws:
            frames = [ws.recv(decode=False) for _ in range(TRADES)]
        sent = json.loads(sender.stdout.readline())
        assert sender.wait(30) == 0
    trades = [decode(frame) for frame in frames]
    assert all(isinstance(trade, CombinedTrade) for trade in trades), frames[:3]
    assert [trade.data.t for trade in trades] == list(range(FIRST_ID, FIRST_ID + TRADES))
    checked = validate(trades, frames, frozenset({"BTCUSDT"}))  # µs times, exact decimals, the stream's symbol
    assert checked.rejected == []
    assert len(checked.by_symbol["BTCUSDT"]) == TRADES
    assert sent["frames"] == TRADES
