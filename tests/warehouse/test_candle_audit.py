"""The candle audit against the exchange: the sandbox's own klines in the marts audit clean; a changed
candle is a mismatch naming its fields and both values, an absent one is missing; a second audit
checks only what closed since the first."""

import json
from decimal import Decimal

import pytest

from include.binance.client import BinanceClient
from include.cli import main
from include.timeutil import from_us, to_us
from include.warehouse.audit import (
    INTERVAL_US,
    INTERVALS,
    MATCH,
    MISMATCH,
    MISSING,
    CandleAuditor,
    audit_closed_candles,
)
from tests.support.warehouse import fill_candles_from_exchange

SYMBOL = "BTCUSDT"
HISTORY_SECONDS = 3 * 3600  # so the last whole clock hour and the half hour before it are always inside


def closed_buckets(start_us: int, closed_by_us: int) -> set[tuple[str, int]]:
    """Every (interval, open time) of the buckets in [start_us, ...) closed by ``closed_by_us``."""
    expected = set()
    for interval, width in INTERVAL_US.items():
        open_us = -(-start_us // width) * width
        while open_us + width <= closed_by_us:
            expected.add((interval, open_us))
            open_us += width
    return expected


@pytest.fixture
def exchange(start_sandbox):
    with (
        start_sandbox(symbols=(SYMBOL,), rate=2.0, history_seconds=HISTORY_SECONDS) as sandbox,
        BinanceClient(sandbox.rest_url) as client,
    ):
        yield sandbox, client


def audit_rows(warehouse) -> list[tuple]:
    rows = warehouse.execute("select interval, open_time, status, differences from marts.candle_audit")
    return sorted(
        (interval, to_us(open_time), status, differences) for interval, open_time, status, differences in rows
    )


def test_a_warehouse_equal_to_the_exchange_audits_clean_and_a_second_audit_checks_only_what_closed_since(
    each_warehouse, exchange
):
    _, client = exchange
    now = client.server_time_us()
    start = now - (HISTORY_SECONDS - 600) * 1_000_000  # inside the history: every bucket has its trades
    assert fill_candles_from_exchange(each_warehouse, client, SYMBOL, start - 86_400_000_000, now) > 0
    auditor = CandleAuditor(each_warehouse.execute, each_warehouse.dialect, client)

    halfway = now - 1800 * 1_000_000
    first = auditor.audit([SYMBOL], start, now, now_us=halfway)
    assert first.as_dict()[MATCH] == len(first.buckets) > 60
    assert not first.failed
    first_seen = {(bucket.interval, bucket.open_time_us) for bucket in first.buckets}
    assert first_seen == closed_buckets(start, halfway)

    second = auditor.audit([SYMBOL], start, now, now_us=now)
    second_seen = {(bucket.interval, bucket.open_time_us) for bucket in second.buckets}
    assert second_seen == closed_buckets(start, now) - first_seen, "only the buckets closed since the first"
    assert second_seen
    assert second.as_dict()[MATCH] == len(second.buckets)
    assert auditor.audit([SYMBOL], start, now, now_us=now).buckets == []
    recorded = audit_rows(each_warehouse)
    assert len(recorded) == len(first_seen | second_seen)
    assert {(interval, open_us) for interval, open_us, _, _ in recorded} == first_seen | second_seen
    assert {status for _, _, status, _ in recorded} == {MATCH}


def test_a_changed_candle_is_a_mismatch_naming_its_fields_and_an_absent_one_is_missing(each_warehouse, exchange):
    _, client = exchange
    now = client.server_time_us()
    start = now - 3600 * 1_000_000
    fill_candles_from_exchange(each_warehouse, client, SYMBOL, start - 86_400_000_000, now)
    width = INTERVAL_US["1m"]
    five = INTERVAL_US["5m"]
    changed, absent = -(-start // width) * width + 5 * width, -(-start // five) * five + 2 * five
    p, ts = each_warehouse.dialect.placeholder, each_warehouse.dialect.timestamp_type
    (before,) = each_warehouse.execute(
        f"select close, volume from marts.candles_1m where open_time = cast({p} as {ts})",
        [from_us(changed).isoformat()],
    )
    each_warehouse.execute(
        f"update marts.candles_1m set close = close + 0.00000001, trade_count = trade_count + 1 "
        f"where open_time = cast({p} as {ts})",
        [from_us(changed).isoformat()],
    )
    each_warehouse.execute(
        f"delete from marts.candles_5m where open_time = cast({p} as {ts})", [from_us(absent).isoformat()]
    )
    result = CandleAuditor(each_warehouse.execute, each_warehouse.dialect, client).audit(
        [SYMBOL], start, now, now_us=now, intervals=INTERVALS
    )
    assert result.failed
    (mismatch,) = [bucket for bucket in result.buckets if bucket.status == MISMATCH]
    assert (mismatch.interval, mismatch.open_time_us) == ("1m", changed)
    close = before[0]
    fields = dict(part.split(": ", 1) for part in mismatch.differences.split("; "))
    assert set(fields) == {"close", "trade_count"}
    raised = format(close + Decimal("0.00000001"), "f")
    assert fields["close"] == f"warehouse {raised} != exchange {format(close, 'f')}"
    (missing,) = [bucket for bucket in result.buckets if bucket.status == MISSING]
    assert (missing.interval, missing.open_time_us) == ("5m", absent)
    assert result.count(MATCH) == len(result.buckets) - 2
    recorded = {(interval, open_us): (status, diff) for interval, open_us, status, diff in audit_rows(each_warehouse)}
    assert recorded[("1m", changed)] == (MISMATCH, mismatch.differences)
    assert recorded[("5m", absent)] == (MISSING, "")


def test_the_audit_command_prints_a_summary_and_exits_1_naming_the_first_differences(
    exchange, tmp_path, monkeypatch, capsys
):
    sandbox, client = exchange
    now = client.server_time_us()
    start = now - 1800 * 1_000_000
    monkeypatch.setenv("BINANCE_REST_URL", sandbox.rest_url)
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    from include.warehouse.duckdb_backend import DuckDBWarehouse

    with DuckDBWarehouse(tmp_path / "w.duckdb") as warehouse:
        fill_candles_from_exchange(warehouse, client, SYMBOL, start - 86_400_000_000, now)
    window = [
        "--symbol",
        SYMBOL,
        "--start",
        from_us(start).isoformat(),
        "--end",
        from_us(start + 900_000_000).isoformat(),
    ]
    assert main(["audit", *window]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary[MATCH] == summary["buckets"] > 0
    with DuckDBWarehouse(tmp_path / "w.duckdb") as warehouse:
        warehouse.execute("update marts.candles_1m set high = high + 1")
    later = ["--symbol", SYMBOL, "--start", from_us(start).isoformat(), "--end", from_us(now).isoformat()]
    assert main(["audit", *later]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out.splitlines()[-1])[MISMATCH] > 0
    assert len(captured.err.strip().splitlines()) == 1
    assert "high: warehouse" in captured.err
    assert "!= exchange" in captured.err


def _record_window(warehouse, start_us: int, end_us: int, missing: int) -> None:
    p, ts = warehouse.dialect.placeholder, warehouse.dialect.timestamp_type
    warehouse.execute(
        "insert into raw.completeness (exchange, symbol, window_start, window_end, expected, present_before, "
        "filled, holes, hole_count, refused_count, missing, checked_at, loaded_at) values "
        f"('binance', {p}, cast({p} as {ts}), cast({p} as {ts}), 10, 10, 0, '[]', 0, 0, {p}, null, current_timestamp)",
        [SYMBOL, from_us(start_us).isoformat(), from_us(end_us).isoformat(), missing],
    )


def test_the_scheduled_audit_compares_only_buckets_closed_and_confirmed_whole_by_the_repair(each_warehouse, exchange):
    """The stream alone cannot confirm a bucket whole: what the repair has not yet checked, or found
    still missing trades, waits; a symbol never repaired is not audited at all."""
    _, client = exchange
    now = client.server_time_us()
    hour = 3_600_000_000
    first_hour = now // hour * hour - hour  # the last whole clock hour, inside the sandbox's history
    start = first_hour - 30 * 60_000_000
    fill_candles_from_exchange(each_warehouse, client, SYMBOL, start, now)
    assert audit_closed_candles(each_warehouse.execute, each_warehouse.dialect, client).buckets == []

    _record_window(each_warehouse, start, first_hour, missing=0)  # checked whole
    _record_window(each_warehouse, first_hour, first_hour + hour, missing=3)  # still missing trades
    result = audit_closed_candles(each_warehouse.execute, each_warehouse.dialect, client)
    assert {(b.interval, b.open_time_us) for b in result.buckets} == closed_buckets(start, first_hour)
    assert result.as_dict()[MATCH] == len(result.buckets) > 30
