"""Alerts in tests: 1m candles written into the marts by hand, to steer a rule exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support.warehouse import create_candle_marts

MINUTE = timedelta(minutes=1)


def insert_minutes(warehouse, start: datetime, closes: list[str], complete: list[bool] | None = None) -> None:
    """marts.candles_1m of BTCUSDT replaced by one minute per close from ``start``, each opening at the
    close before it; every one closed, complete unless ``complete`` says otherwise."""
    create_candle_marts(warehouse)
    p, ts = warehouse.dialect.placeholder, warehouse.dialect.timestamp_type
    warehouse.execute("delete from marts.candles_1m")
    previous = closes[0]
    for index, close in enumerate(closes):
        open_time = start + index * MINUTE
        values = [
            "BTCUSDT",
            open_time.isoformat(),
            (open_time + MINUTE - timedelta(milliseconds=1)).isoformat(),
            previous,
            close,
            close,
            close,
            "1",
            True,
            True if complete is None else complete[index],
            datetime.now(UTC).isoformat(),
        ]
        warehouse.execute(
            "insert into marts.candles_1m (symbol, open_time, close_time, open, high, low, close, volume, "
            f"is_closed, is_complete, built_at) values ({p}, cast({p} as {ts}), cast({p} as {ts}), "
            f"{p}, {p}, {p}, {p}, {p}, {p}, {p}, cast({p} as {ts}))",
            values,
        )
        previous = close
