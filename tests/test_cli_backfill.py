"""``python -m include.cli backfill``: the history import, as a real process against a replaying sandbox.

The sandbox replays data.binance.vision-style dumps written here (XRPETH, October 2019, millisecond
times), so the truth is known trade for trade: the lake must end up holding exactly the dump's trades
of the range, with exact values, and the exchange-side holes in the dump's ids on record in the
completeness ledger.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from include.lake.store import LocalStore
from include.lake.trades import read_trades
from include.repair.ledger import read_report, read_reports
from include.sandbox import rest
from tests.support.exchange import rest_history
from tests.support.net import MICRO, free_port
from tests.support.paths import REPO_ROOT
from tests.support.processes import run_to_end
from tests.support.rest_proxy import RestProxy

SYMBOL = "XRPETH"
START = datetime(2019, 10, 11, tzinfo=UTC)
END = datetime(2019, 10, 13, 12, tzinfo=UTC)
COMMAND = ["-m", "include.cli", "backfill", "--symbol", "XRPETH"]
RANGE = ["--start", "2019-10-11T00:00:00Z", "--end", "2019-10-13T12:00:00Z"]

EMPTY_HOUR = datetime(2019, 10, 12, 5, tzinfo=UTC)  # no trade at all
BURST_HOUR = datetime(2019, 10, 11, 14, tzinfo=UTC)  # more trades than one historicalTrades page
MID_HOUR_HOLE = datetime(2019, 10, 12, 9, tzinfo=UTC)  # three ids missing in the middle of this hour
BOUNDARY_HOLE = datetime(2019, 10, 12, 18, tzinfo=UTC)  # one id missing right before this hour's first trade
LATE_HOLE = datetime(2019, 10, 13, 15, tzinfo=UTC)  # after the range: never the range's business
# Hours whose first trade is exactly on the hour and whose last is in its final millisecond: the
# range's own start (included) and end (excluded), and a window boundary inside the range.
EDGE_HOURS = (START, END, datetime(2019, 10, 12, 3, tzinfo=UTC), datetime(2019, 10, 12, 2, tzinfo=UTC))


@dataclass(frozen=True)
class DumpTrade:
    trade_id: int
    price: str
    qty: str
    quote: str
    time_ms: int
    buyer_maker: bool


def _units(text_units: int) -> str:
    whole, frac = divmod(text_units, 10**8)
    return f"{whole}.{frac:08d}"


def write_dump(folder: Path) -> tuple[list[DumpTrade], list[int], list[Path]]:
    """XRPETH trades from 2019-10-10 22:00 to 2019-10-13 23:59, one CSV per day as Binance publishes them.

    XRPETH: tick 0.00000001 ETH, step 1 XRP. Returns the trades, the ids that do not exist, the files.
    """
    rng = random.Random(20191011)
    trades: list[DumpTrade] = []
    holes: list[int] = []
    next_id = 26_500_000
    price = 29_000  # 0.00029000 ETH in 1e-8 units
    hour = datetime(2019, 10, 10, 22, tzinfo=UTC)
    while hour < datetime(2019, 10, 14, tzinfo=UTC):
        count = 0 if hour == EMPTY_HOUR else 1500 if hour == BURST_HOUR else rng.randint(20, 60)
        base_ms = int(hour.timestamp()) * 1000
        times = sorted(base_ms + rng.randrange(3_600_000) for _ in range(count))
        if hour in EDGE_HOURS:
            times[0], times[-1] = base_ms, base_ms + 3_599_999
        for index, time_ms in enumerate(times):
            if index == 0 and hour == BOUNDARY_HOLE:
                holes.append(next_id)
                next_id += 1
            if index == 10 and hour in (MID_HOUR_HOLE, LATE_HOLE):
                holes.extend(range(next_id, next_id + 3))
                next_id += 3
            maker = rng.random() < 0.5
            fills = 1 + (rng.randrange(3) if rng.random() < 0.2 else 0)  # a sweep: fills in the same ms
            for _ in range(fills):
                price = max(1, price + rng.choice((-2, -1, 0, 0, 1, 2)))
                qty = rng.randint(1, 5000)
                trades.append(DumpTrade(next_id, _units(price), f"{qty}.00000000", _units(price * qty), time_ms, maker))
                next_id += 1
        hour += timedelta(hours=1)
    files = []
    by_day: dict[str, list[DumpTrade]] = {}
    for trade in trades:
        day = datetime.fromtimestamp(trade.time_ms / 1000, UTC).strftime("%Y-%m-%d")
        by_day.setdefault(day, []).append(trade)
    for day, rows in by_day.items():
        path = folder / f"{SYMBOL}-trades-{day}.csv"
        path.write_text(
            "".join(f"{t.trade_id},{t.price},{t.qty},{t.quote},{t.time_ms},{t.buyer_maker},True\n" for t in rows)
        )
        files.append(path)
    return trades, holes, files


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A real process in its own group (ended with all it started); nothing written outside ``cwd``."""
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DATA_DIR": str(cwd / "data"), **env}
    for name in ("EXCHANGE", "SANDBOX_PORT", "SYMBOLS", "BINANCE_WS_URL", "DUCKDB_PATH"):
        if name not in env:
            environment.pop(name, None)
    return run_to_end([sys.executable, *args], environment, timeout=600, cwd=cwd)


def backfill(*args: str, rest_url: str, lake_dir: Path) -> subprocess.CompletedProcess[str]:
    """``python -m include.cli backfill ...`` against ``rest_url`` into a lake folder; run in its parent."""
    env = {"BINANCE_REST_URL": rest_url, "LAKE_URL": f"file://{lake_dir}"}
    return run_cli("-m", "include.cli", "backfill", *args, env=env, cwd=lake_dir.parent)


def trade_objects(lake: LocalStore) -> dict[str, str]:
    """Every trade object in the lake with its etag (size and mtime in ns): any rewrite changes it."""
    return {info.key: info.etag for info in lake.list("trades/")}


@pytest.fixture
def counted_requests(monkeypatch) -> Counter[str]:
    """Requests the sandbox answered, per endpoint, counted by the exchange itself."""
    calls: Counter[str] = Counter()
    for name, endpoint in list(rest.ENDPOINTS.items()):

        def handler(exchange: Any, request: Any, name: str = name, inner: Any = endpoint.handler) -> object:
            calls[name] += 1
            return inner(exchange, request)

        monkeypatch.setitem(rest.ENDPOINTS, name, rest.Endpoint(endpoint.weigh, handler))
    return calls


@pytest.mark.slow
def test_backfill_imports_history_exactly_once(start_sandbox, tmp_path, counted_requests):
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    trades, holes, files = write_dump(dumps)
    assert [path.name for path in files] == [f"{SYMBOL}-trades-2019-10-{day}.csv" for day in (10, 11, 12, 13)]
    start_ms, end_ms = int(START.timestamp() * 1000), int(END.timestamp() * 1000)
    wanted = [t for t in trades if start_ms <= t.time_ms < end_ms]
    first_id = wanted[0].trade_id
    end_id = next(t.trade_id for t in trades if t.time_ms >= end_ms)  # the first trade after the range
    holes_in_range = [i for i in holes if first_id <= i < end_id]
    assert len(holes_in_range) == 4
    assert len(holes) == 7
    assert len(wanted) > 3000

    lake_dir = tmp_path / "lake"
    lake = LocalStore(lake_dir)
    with start_sandbox(replay=tuple(files), replay_mode="historical", symbols=()) as sandbox:
        env = {"BINANCE_REST_URL": sandbox.rest_url, "LAKE_URL": f"file://{lake_dir}"}
        first = run_cli(*COMMAND, *RANGE, env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]
        totals = json.loads(first.stdout.strip().splitlines()[-1])
        first_calls = Counter(counted_requests)
        objects = trade_objects(lake)
        reports = {report.start: report for report in read_reports(lake, SYMBOL)}  # as the first run left them

        counted_requests.clear()
        second = run_cli(*COMMAND, *RANGE, env=env, cwd=tmp_path)
        assert second.returncode == 0, second.stderr[-3000:]
        again = json.loads(second.stdout.strip().splitlines()[-1])
        second_calls = Counter(counted_requests)

    # The printed totals: 60 hour windows, every id of the range expected, every trade filled.
    assert totals == {
        "windows": 60,
        "expected": end_id - first_id,
        "filled": len(wanted),
        "holes": len(holes_in_range),
        "incomplete": 0,
        "requests": sum(first_calls.values()),
        "rate_limited": 0,
    }
    assert first_calls["historicalTrades"] >= 2  # the burst hour alone needs two pages

    # The lake holds exactly the dump's trades of the range, value for value, each once.
    table = read_trades(lake, SYMBOL)
    rows = sorted(table.to_pylist(), key=lambda row: row["trade_id"])
    assert [row["trade_id"] for row in rows] == [t.trade_id for t in wanted]  # and none twice
    assert wanted[0].time_ms == start_ms
    assert trades[trades.index(wanted[-1]) + 1].time_ms == end_ms
    for row, trade in zip(rows, wanted, strict=True):
        assert f"{row['price']:.8f}" == trade.price, row
        assert f"{row['quantity']:.8f}" == trade.qty, row
        assert row["quote_quantity"] == Decimal(trade.quote), row
        assert row["trade_time"] == datetime.fromtimestamp(trade.time_ms / 1000, UTC), row
        assert int(row["trade_time"].timestamp()) * 1_000_000 + row["trade_time"].microsecond == trade.time_ms * 1000
        assert row["is_buyer_maker"] is trade.buyer_maker, row
        assert (row["exchange"], row["symbol"], row["source"]) == ("binance", SYMBOL, "backfill")
    assert all("/backfill-" in key for key in objects)
    assert not any("date=2019-10-10" in key or "date=2019-10-14" in key for key in objects)

    # The completeness ledger: one report per window, all complete, and the holes on record.
    assert sorted(reports) == [(START + timedelta(hours=h)).isoformat() for h in range(60)]
    assert all(report.missing == 0 for report in reports.values())
    assert sorted(i for report in reports.values() for i in report.holes) == holes_in_range
    empty = reports[EMPTY_HOUR.isoformat()]
    assert (empty.expected, empty.filled, empty.holes) == (0, 0, [])
    burst = reports[BURST_HOUR.isoformat()]
    burst_ms = int(BURST_HOUR.timestamp() * 1000)
    assert burst.filled == len([t for t in wanted if burst_ms <= t.time_ms < burst_ms + 3_600_000]) > 1000
    mid = reports[MID_HOUR_HOLE.isoformat()]
    assert len(mid.holes) == 3
    assert mid.expected == mid.filled + 3

    # A second run: nothing to do, no trade object written again, no history fetched (holes included).
    assert again["filled"] == 0
    assert again["incomplete"] == 0
    assert again["windows"] == 60
    assert again["holes"] == len(holes_in_range)
    assert trade_objects(lake) == objects
    assert second_calls["historicalTrades"] == 0, second_calls
    after = read_reports(lake, SYMBOL)
    assert len(after) == 60
    assert all(report.missing == 0 and report.filled == 0 for report in after)
    assert sorted(i for report in after for i in report.holes) == holes_in_range
    assert read_report(lake, SYMBOL, EMPTY_HOUR).expected == 0


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--start", "11/10/2019", "--end", "2019-10-13T12:00:00Z"], {}, "'11/10/2019'"),
        (["--start", "2019-10-11T00:00:00", "--end", "2019-10-13T12:00:00Z"], {}, "'2019-10-11T00:00:00'"),
        (["--start", "2019-10-13T12:00:00Z", "--end", "2019-10-11T00:00:00Z"], {}, "2019-10-11T00:00:00+00:00"),
        (["--start", "2019-10-11T00:00:00Z", "--end", "2019-10-11T00:00:00Z"], {}, "--end"),
        ([*RANGE, "--until", "2019-10-14T00:00:00Z"], {}, "--until"),
        (RANGE, {"BINANCE_REST_URL": "api.binance.com"}, "'api.binance.com'"),
        (RANGE, {"BINANCE_REST_URL": "ftp://127.0.0.1:9"}, "'ftp://127.0.0.1:9'"),
    ],
    ids=["start-not-iso", "start-without-zone", "end-before-start", "empty-range", "unknown-option", "bad-url", "ftp"],
)
def test_bad_arguments_exit_2_naming_the_value(tmp_path, args, env, named):
    lake_dir = tmp_path / "lake"
    result = run_cli(
        *COMMAND,
        *args,
        env={"LAKE_URL": f"file://{lake_dir}", "BINANCE_REST_URL": "http://127.0.0.1:9", **env},
        cwd=tmp_path,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not lake_dir.exists()  # nothing was written


def test_a_symbol_the_exchange_does_not_list_exits_2_naming_it_before_any_window(
    start_sandbox, tmp_path, counted_requests
):
    lake_dir = tmp_path / "lake"
    with start_sandbox(symbols=("BTCUSDT",), rate=2.0) as sandbox:
        result = backfill(
            "--symbol",
            "BTCUSDT,DOGEETH",
            *RANGE,
            rest_url=sandbox.rest_url,
            lake_dir=lake_dir,
        )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "'DOGEETH'" in line
    assert "BTCUSDT" not in line
    # Refused at the start, after one exchangeInfo: not a window of BTCUSDT was checked.
    assert counted_requests == Counter({"exchangeInfo": 1}), counted_requests
    assert not lake_dir.exists()


@pytest.mark.slow
def test_a_range_that_has_not_ended_is_reported_incomplete_not_closed(start_sandbox, tmp_path):
    """Windows still open at the exchange cannot be closed: exit 1, and no ledger report says complete."""
    lake_dir = tmp_path / "lake"
    lake = LocalStore(lake_dir)
    with start_sandbox(symbols=("BTCUSDT",), rate=20.0, history_seconds=600) as sandbox:
        now = datetime.now(UTC)
        start, end = now - timedelta(minutes=5), now + timedelta(minutes=5)
        result = backfill(
            "--symbol",
            "BTCUSDT",
            "--start",
            start.isoformat(),
            "--end",
            end.isoformat(),
            rest_url=sandbox.rest_url,
            lake_dir=lake_dir,
        )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    totals = json.loads(result.stdout.strip().splitlines()[-1])
    # The range is cut at clock hours; a window that ended before now can be closed, the last one cannot.
    boundary = (start + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    closed = 1 if boundary <= now else 0
    windows = 2 if boundary < end else 1
    assert (totals["windows"], totals["incomplete"]) == (closed, windows - closed), totals
    assert "incomplete: BTCUSDT" in result.stderr
    # Whatever was written, no report claims a window that ends after now is complete.
    for report in read_reports(lake, "BTCUSDT"):
        assert datetime.fromisoformat(report.end) <= now or report.missing > 0, report


def test_an_exchange_that_does_not_answer_is_an_error_naming_it_not_a_traceback(tmp_path):
    unreachable = f"http://127.0.0.1:{free_port()}"
    result = backfill(
        "--symbol",
        "XRPETH",
        *RANGE,
        "--attempts",
        "2",
        rest_url=unreachable,
        lake_dir=tmp_path / "lake",
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"{unreachable} did not answer" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "lake" / "trades").exists()


def test_end_defaults_to_now(start_sandbox, tmp_path):
    lake_dir = tmp_path / "lake"
    lake = LocalStore(lake_dir)
    with start_sandbox(symbols=("BTCUSDT",), rate=5.0, history_seconds=2 * 3600) as sandbox:
        start = (datetime.now(UTC) - timedelta(minutes=80)).replace(microsecond=0)
        before = datetime.now(UTC)
        result = backfill(
            "--symbol",
            "BTCUSDT",
            "--start",
            start.isoformat(),
            rest_url=sandbox.rest_url,
            lake_dir=lake_dir,
        )
        after = datetime.now(UTC)
        rest = rest_history(sandbox.rest_url, "BTCUSDT", 0, MICRO, until_us=int(after.timestamp() * 1_000_000))
    assert result.returncode == 0, result.stderr[-3000:]
    totals = json.loads(result.stdout.strip().splitlines()[-1])
    reports = read_reports(lake, "BTCUSDT")
    assert totals["windows"] == len(reports) >= 2  # 80 minutes span two or three clock hours
    assert reports[0].start == start.isoformat()
    end = datetime.fromisoformat(reports[-1].end)
    assert before <= end <= after  # the range ended when the command ran
    assert all(report.complete for report in reports)
    start_us, end_us = (int(moment.timestamp() * 1_000_000) for moment in (start, end))
    wanted = [row["id"] for row in rest if start_us <= row["time"] < end_us]
    assert len(wanted) > 1000
    assert sorted(read_trades(lake, "BTCUSDT")["trade_id"].to_pylist()) == wanted


def test_a_rest_value_outside_the_contract_is_refused_naming_it_and_recorded(start_sandbox, tmp_path):
    lake_dir = tmp_path / "lake"
    window = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    with start_sandbox(symbols=("BTCUSDT",), rate=2.0, history_seconds=2 * 3600) as sandbox:
        rows = [
            row
            for row in rest_history(sandbox.rest_url, "BTCUSDT", 0, MICRO)
            if window.timestamp() * 1_000_000 <= row["time"] < (window + timedelta(hours=1)).timestamp() * 1_000_000
        ]
        spoiled = rows[len(rows) // 2]["id"]

        def spoil(endpoint: str, params: dict[str, str], body: Any) -> Any:
            if endpoint != "historicalTrades":
                return body
            return [{**row, "price": "123.4567890123"} if row["id"] == spoiled else row for row in body]

        with RestProxy(sandbox.rest_url, spoil) as proxy:
            result = backfill(
                "--symbol",
                "BTCUSDT",
                "--start",
                window.isoformat(),
                "--end",
                (window + timedelta(hours=1)).isoformat(),
                rest_url=proxy.url,
                lake_dir=lake_dir,
            )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("incomplete:")]
    assert "123.4567890123" in line
    assert "price has more than 8 decimals" in line
    assert json.loads(result.stdout.strip().splitlines()[-1])["incomplete"] == 1
    report = read_report(LocalStore(lake_dir), "BTCUSDT", window)
    assert (report.missing, report.filled, [item["id"] for item in report.refused]) == (1, len(rows) - 1, [spoiled])
    stored = read_trades(LocalStore(lake_dir), "BTCUSDT")["trade_id"].to_pylist()
    assert sorted(stored) == [row["id"] for row in rows if row["id"] != spoiled]
