"""The candle audit against the exchange: the sandbox's own klines in the marts audit clean; a changed
complete candle is a mismatch naming its fields and both values, whichever field changes by its smallest
unit; an incomplete candle is never compared (nor recorded: once complete, it is); a complete candle
the exchange has no kline for is missing; a second audit checks only what was not audited before."""

import json
from decimal import Decimal

import pytest

from include.binance.client import BinanceClient
from include.candles import BY_NAME, INTERVAL_NAMES, INTERVALS
from include.cli import main
from include.timeutil import from_us, to_us
from include.warehouse.audit import (
    MATCH,
    MISMATCH,
    MISSING,
    CandleAuditor,
    audit_closed_candles,
)
from tests.support.warehouse import fill_candles_from_exchange

SYMBOL = "BTCUSDT"
# The decimal fields of a kline, which the marts hold exactly.
KLINE_FIELDS = ("open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")
HISTORY_SECONDS = 3 * 3600  # so the last whole clock hour and the half hour before it are always inside


def closed_buckets(start_us: int, closed_by_us: int) -> set[tuple[str, int]]:
    """Every (interval, open time) of the buckets in [start_us, ...) closed by ``closed_by_us``."""
    expected = set()
    for interval, width in ((i.name, i.length_us) for i in INTERVALS):
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


def _set(warehouse, interval: str, open_us: int, assignments: str) -> None:
    p, ts = warehouse.dialect.placeholder, warehouse.dialect.timestamp_type
    warehouse.execute(
        f"update marts.candles_{interval} set {assignments} where open_time = cast({p} as {ts})",
        [from_us(open_us).isoformat()],
    )


def test_a_changed_candle_is_a_mismatch_naming_its_fields_and_both_values(each_warehouse, exchange):
    _, client = exchange
    now = client.server_time_us()
    start = now - 3600 * 1_000_000
    fill_candles_from_exchange(each_warehouse, client, SYMBOL, start - 86_400_000_000, now)
    width = BY_NAME["1m"].length_us
    five = BY_NAME["5m"].length_us
    changed, absent = -(-start // width) * width + 5 * width, -(-start // five) * five + 2 * five
    p, ts = each_warehouse.dialect.placeholder, each_warehouse.dialect.timestamp_type
    (before,) = each_warehouse.execute(
        f"select close, volume from marts.candles_1m where open_time = cast({p} as {ts})",
        [from_us(changed).isoformat()],
    )
    _set(each_warehouse, "1m", changed, "close = close + 0.00000001, trade_count = trade_count + 1")
    each_warehouse.execute(
        f"delete from marts.candles_5m where open_time = cast({p} as {ts})", [from_us(absent).isoformat()]
    )
    result = CandleAuditor(each_warehouse.execute, each_warehouse.dialect, client).audit(
        [SYMBOL], start, now, now_us=now, intervals=INTERVAL_NAMES
    )
    assert result.failed
    (mismatch,) = [bucket for bucket in result.buckets if bucket.status == MISMATCH]
    assert (mismatch.interval, mismatch.open_time_us) == ("1m", changed)
    close = before[0]
    fields = dict(part.split(": ", 1) for part in mismatch.differences.split("; "))
    assert set(fields) == {"close", "trade_count"}
    raised = format(close + Decimal("0.00000001"), "f")
    assert fields["close"] == f"warehouse {raised} != exchange {format(close, 'f')}"
    assert result.count(MATCH) == len(result.buckets) - 1
    # A bucket the warehouse lacks is not a candle it could hold differently: nothing to compare.
    assert ("5m", absent) not in {(bucket.interval, bucket.open_time_us) for bucket in result.buckets}
    recorded = {(interval, open_us): (status, diff) for interval, open_us, status, diff in audit_rows(each_warehouse)}
    assert recorded[("1m", changed)] == (MISMATCH, mismatch.differences)


def test_each_field_changed_by_its_smallest_unit_is_a_mismatch_naming_that_field(each_warehouse, exchange):
    """One complete minute per field, each changed by its smallest unit: 1e-8 for prices and base
    volumes, 1e-16 for the quote sums (exact in the marts to 16 decimals), 1 for the trade count."""
    _, client = exchange
    now = client.server_time_us()
    width = BY_NAME["1m"].length_us
    start = (now - 3600 * 1_000_000) // width * width
    fill_candles_from_exchange(each_warehouse, client, SYMBOL, start, now)
    changes = {
        name: f"{name} = {name} + cast('{'0.0000000000000001' if name.endswith('quote_volume') else '0.00000001'}' "
        f"as decimal(38, {16 if name.endswith('quote_volume') else 8}))"
        for name in KLINE_FIELDS  # named here, not taken from the audit: a field it forgot must fail this test
    }
    changes["trade_count"] = "trade_count = trade_count + 1"
    minutes = {name: start + (2 + number) * width for number, name in enumerate(changes)}
    for name, open_us in minutes.items():
        _set(each_warehouse, "1m", open_us, changes[name])
    result = CandleAuditor(each_warehouse.execute, each_warehouse.dialect, client).audit(
        [SYMBOL], start, now, now_us=now, intervals=["1m"]
    )
    mismatched = {bucket.open_time_us: bucket.differences for bucket in result.buckets if bucket.status == MISMATCH}
    assert {open_us: differences.split(":")[0] for open_us, differences in mismatched.items()} == {
        open_us: name for name, open_us in minutes.items()
    }
    assert all(";" not in differences for differences in mismatched.values()), "one field each"
    assert result.count(MATCH) == len(result.buckets) - len(changes) > 0


def test_a_complete_candle_the_exchange_has_no_kline_for_is_missing(each_warehouse, exchange):
    _, client = exchange
    now = client.server_time_us()
    width = BY_NAME["1h"].length_us
    fill_candles_from_exchange(each_warehouse, client, SYMBOL, now - 2 * width, now)
    before_market = (now - (HISTORY_SECONDS + 7200) * 1_000_000) // width * width  # before the sandbox's first trade
    p, ts = each_warehouse.dialect.placeholder, each_warehouse.dialect.timestamp_type
    each_warehouse.execute(
        f"insert into marts.candles_1h select symbol, cast({p} as {ts}), cast({p} as {ts}), open, high, low, close, "
        "volume, quote_volume, taker_buy_volume, taker_buy_quote_volume, trade_count, first_trade_id, last_trade_id, "
        "last_trade_time, is_closed, is_complete, last_loaded_at, built_at from marts.candles_1h "
        f"where open_time = (select min(open_time) from marts.candles_1h)",
        [from_us(before_market).isoformat(), from_us(before_market + width - 1000).isoformat()],
    )
    result = CandleAuditor(each_warehouse.execute, each_warehouse.dialect, client).audit(
        [SYMBOL], before_market, now, now_us=now, intervals=["1h"]
    )
    (missing,) = [bucket for bucket in result.buckets if bucket.status == MISSING]
    assert missing.open_time_us == before_market
    assert not result.failed, "a kline the exchange does not have is not a difference in a candle"


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


def test_the_scheduled_audit_compares_closed_complete_candles_only_and_those_that_became_complete_later(
    each_warehouse, exchange
):
    """An incomplete candle is never a mismatch, whatever it holds, and waits: once it is complete (a
    later build recomputed it), the next audit compares it. The forming candle is not compared either."""
    _, client = exchange
    now = client.server_time_us()
    hour = BY_NAME["1h"].length_us
    start = now // hour * hour - hour  # the last whole clock hour, inside the sandbox's history
    fill_candles_from_exchange(each_warehouse, client, SYMBOL, start, now)
    minute = BY_NAME["1m"].length_us
    waiting = start + 10 * minute, start + 11 * minute  # incomplete, and one of them differs
    for open_us in waiting:
        _set(each_warehouse, "1m", open_us, "is_complete = false")
    _set(each_warehouse, "1m", waiting[0], "close = close + 1, volume = volume + 1")
    first = audit_closed_candles(each_warehouse.execute, each_warehouse.dialect, client)
    assert not first.failed
    seen = {(bucket.interval, bucket.open_time_us) for bucket in first.buckets}
    assert seen == closed_buckets(start, now) - {("1m", open_us) for open_us in waiting}
    assert first.as_dict()[MATCH] == len(first.buckets) > 60
    assert audit_closed_candles(each_warehouse.execute, each_warehouse.dialect, client).buckets == []

    # A later build found them whole: the one that differs is a mismatch now, the other matches.
    for open_us in waiting:
        _set(each_warehouse, "1m", open_us, "is_complete = true")
    second = audit_closed_candles(each_warehouse.execute, each_warehouse.dialect, client)
    assert {(bucket.interval, bucket.open_time_us, bucket.status) for bucket in second.buckets} == {
        ("1m", waiting[0], MISMATCH),
        ("1m", waiting[1], MATCH),
    }
    assert second.failed


def test_an_audit_compares_at_most_its_limit_oldest_first_and_the_next_ones_go_on(exchange, tmp_path):
    from include.warehouse.duckdb_backend import DuckDBWarehouse

    _, client = exchange
    now = client.server_time_us()
    minute = BY_NAME["1m"].length_us
    start = (now - 3600 * 1_000_000) // minute * minute
    with DuckDBWarehouse(tmp_path / "w.duckdb") as warehouse:
        fill_candles_from_exchange(warehouse, client, SYMBOL, start, now)
        auditor = CandleAuditor(warehouse.execute, warehouse.dialect, client, limit=25)
        runs = [auditor.audit([SYMBOL], start, now, now_us=now, intervals=["1m"]).buckets for _ in range(4)]
    opens = [[bucket.open_time_us for bucket in run] for run in runs]
    assert [len(run) for run in opens[:2]] == [25, 25]
    assert opens[0] == [start + number * minute for number in range(25)]
    assert opens[1] == [start + number * minute for number in range(25, 50)]
    every = [open_us for run in opens for open_us in run]
    assert sorted(every) == sorted(open_us for interval, open_us in closed_buckets(start, now) if interval == "1m")
    assert opens[-1] == []
