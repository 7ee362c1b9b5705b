"""The data's health as pipeline checks (include/alerts/checks.py): what each sees now is an incident.

- ``stale_symbol``: a streamed symbol whose newest closed 1m candle closed more than
  ``ALERT_STALE_MINUTES`` ago: the stream, the load or the transform has stalled. A symbol with no
  candle at all is not stale: until its first candle is built there is nothing it fell behind (a fresh
  ``make up`` is not all alarms); once it has one, it is judged, however far back that one is.
- ``incomplete_candles``: per symbol, closed 1m candles (of the last ``LOOKBACK``) still not complete
  ``ALERT_INCOMPLETE_MINUTES`` after they closed: trade ids are missing that neither the live fill nor
  the repair has filled. One incident per symbol, its evidence the oldest such candle.
- ``exchange_hole``: the exchange-side holes the repair or a live fill found (``staging.stg_trade_holes``,
  recorded in the last ``LOOKBACK``), one fact per symbol and run of consecutive ids, stored once and
  resolved at once: there is nothing to clear.
- ``reconnect_storm``: a stream writer whose heartbeat (fresh: written within ``RECONNECT_WINDOW``)
  reports at least ``ALERT_RECONNECTS`` reconnects within ``RECONNECT_WINDOW`` (include/lake/heartbeats.py).
- ``audit_mismatch``: a candle ``marts.candle_audit`` holds as a mismatch with the exchange's kline, one
  incident per (symbol, interval, open time); it clears when the row is gone (the runbook of
  dags/warehouse.py deletes it after the repair).

A table not built yet (no dbt build, no audit) is no incident and no error. Every query runs through
the check's ``execute`` and dialect with bound values, on DuckDB and Snowflake alike. An incident's id
is its check, its subject and the evidence it began with, so a condition that ends and comes back
later is a new incident, and one that lasts is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from include.alerts.checks import LOOKBACK, CheckInput, PipelineCheck
from include.alerts.model import PIPELINE, Alert, alert_id
from include.lake.heartbeats import RECONNECT_WINDOW, read_heartbeats, recent_reconnects
from include.timeutil import to_us
from include.warehouse.audit import MISMATCH

STALE_SYMBOL, INCOMPLETE_CANDLES, EXCHANGE_HOLE = "stale_symbol", "incomplete_candles", "exchange_hole"
RECONNECT_STORM, AUDIT_MISMATCH = "reconnect_storm", "audit_mismatch"


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def relations(check: CheckInput, schema: str) -> set[str]:
    """The tables and views of ``schema`` (lower case): a check reads only what a build has made."""
    rows = check.execute(
        "select lower(table_name) from information_schema.tables where lower(table_schema) = "
        f"{check.dialect.placeholder}",
        [schema],
    )
    return {row[0] for row in rows}


def _marks(check: CheckInput, values: Sequence[object]) -> str:
    return ", ".join([check.dialect.placeholder] * len(values))


# stale_symbol ------------------------------------------------------------------------------------------


def stale_symbol(check: CheckInput) -> list[Alert]:
    symbols = check.settings.symbols
    if not symbols or "candles_1m" not in relations(check, "marts"):
        return []
    limit = timedelta(minutes=check.settings.alerts.stale_minutes)
    # The recent candles first (a bounded read); only a symbol without one there is looked up further back.
    newest = _newest_closes(check, symbols, check.now - LOOKBACK)
    if older := [symbol for symbol in symbols if symbol not in newest]:
        newest |= _newest_closes(check, older, None)
    return [
        _stale(check, symbol, close, limit) for symbol, close in sorted(newest.items()) if check.now - close > limit
    ]


def _newest_closes(check: CheckInput, symbols: Sequence[str], since: datetime | None) -> dict[str, datetime]:
    p, ts = check.dialect.placeholder, check.dialect.timestamp_type
    bound = "" if since is None else f" and close_time >= cast({p} as {ts})"
    rows = check.execute(
        f"select symbol, max(close_time) from marts.candles_1m where is_closed and symbol in ({_marks(check, symbols)})"
        f"{bound} group by symbol",
        [*symbols, *([] if since is None else [since.isoformat()])],
    )
    return {symbol: close for symbol, close in rows if close is not None}


def _stale(check: CheckInput, symbol: str, close: datetime, limit: timedelta) -> Alert:
    minutes = int((check.now - close).total_seconds() // 60)
    return Alert(
        alert_id=alert_id(STALE_SYMBOL, symbol, to_us(close)),
        kind=PIPELINE,
        rule_id=STALE_SYMBOL,
        subject=symbol,
        message=f"{symbol} is stale: no closed 1m candle for {minutes} minutes (the newest closed at {_utc(close)}; "
        f"the limit is {limit.total_seconds() / 60:g} minutes): the stream, the load or the transform has stalled",
        event_time=close,
        symbol=symbol,
        interval="1m",
    )


# incomplete_candles ------------------------------------------------------------------------------------


def incomplete_candles(check: CheckInput) -> list[Alert]:
    symbols = check.settings.symbols
    if not symbols or "candles_1m" not in relations(check, "marts"):
        return []
    p, ts = check.dialect.placeholder, check.dialect.timestamp_type
    late = timedelta(minutes=check.settings.alerts.incomplete_minutes)
    rows = check.execute(
        "select symbol, count(*), min(open_time), max(open_time), min(close_time) from marts.candles_1m "
        f"where is_closed and not is_complete and close_time < cast({p} as {ts}) "
        f"and close_time >= cast({p} as {ts}) and symbol in ({_marks(check, symbols)}) group by symbol order by symbol",
        [(check.now - late).isoformat(), (check.now - LOOKBACK).isoformat(), *symbols],
    )
    return [_incomplete(symbol, int(count), first, last, close, late) for symbol, count, first, last, close in rows]


def _incomplete(symbol: str, count: int, first: datetime, last: datetime, close: datetime, late: timedelta) -> Alert:
    span = _utc(first) if first == last else f"{_utc(first)} to {_utc(last)}"
    return Alert(
        alert_id=alert_id(INCOMPLETE_CANDLES, symbol, to_us(first)),
        kind=PIPELINE,
        rule_id=INCOMPLETE_CANDLES,
        subject=symbol,
        message=f"{symbol}: {count} closed 1m candle{'s' if count > 1 else ''} still incomplete more than "
        f"{late.total_seconds() / 60:g} minutes after closing, opening {span}: trade ids are missing that "
        "neither the live fill nor the repair has filled",
        event_time=close,
        symbol=symbol,
        interval="1m",
        open_time=first,
        value=Decimal(count),
    )


# exchange_hole ----------------------------------------------------------------------------------------


def exchange_hole(check: CheckInput) -> list[Alert]:
    if "stg_trade_holes" not in relations(check, "staging"):
        return []
    p, ts = check.dialect.placeholder, check.dialect.timestamp_type
    rows = check.execute(
        "select symbol, trade_id, loaded_at from staging.stg_trade_holes "
        f"where loaded_at >= cast({p} as {ts}) order by symbol, trade_id",
        [(check.now - LOOKBACK).isoformat()],
    )
    return [_hole(symbol, run, recorded, check.now) for symbol, run, recorded in _runs(rows)]


def _runs(rows: Iterable[tuple[str, int, datetime]]) -> list[tuple[str, tuple[int, int], datetime]]:
    """Consecutive ids of one symbol (rows in symbol and id order) as (symbol, (first, last), newest record)."""
    runs: list[tuple[str, tuple[int, int], datetime]] = []
    for symbol, trade_id, recorded in rows:
        if runs and runs[-1][0] == symbol and runs[-1][1][1] + 1 == trade_id:
            _, (first, _), before = runs[-1]
            runs[-1] = (symbol, (first, trade_id), max(before, recorded))
        else:
            runs.append((symbol, (trade_id, trade_id), recorded))
    return runs


def _hole(symbol: str, run: tuple[int, int], recorded: datetime, now: datetime) -> Alert:
    first, last = run
    ids = f"id {first} does" if first == last else f"ids {first} to {last} ({last - first + 1}) do"
    return Alert(
        alert_id=alert_id(EXCHANGE_HOLE, symbol, f"{first}-{last}"),
        kind=PIPELINE,
        rule_id=EXCHANGE_HOLE,
        subject=symbol,
        message=f"{symbol}: trade {ids} not exist on the exchange (an exchange-side hole, recorded at "
        f"{_utc(recorded)}): the candles over them are complete without them",
        event_time=recorded,
        symbol=symbol,
        value=Decimal(last - first + 1),
        resolved_at=now,  # a fact: nothing to clear
    )


# reconnect_storm --------------------------------------------------------------------------------------


def reconnect_storm(check: CheckInput) -> list[Alert]:
    since, limit = check.now - RECONNECT_WINDOW, check.settings.alerts.reconnects
    alerts = []
    for body in read_heartbeats(check.lake):
        if datetime.fromisoformat(body["updated_at"]) < since:
            continue  # a writer that stopped is no longer reconnecting
        times = recent_reconnects(body, since)
        if len(times) >= limit:
            alerts.append(_storm(str(body.get("writer")), times, len(body.get("symbols") or {}), limit))
    return alerts


def _storm(writer: str, times: list[datetime], symbols: int, limit: int) -> Alert:
    window = RECONNECT_WINDOW.total_seconds() / 60
    return Alert(
        alert_id=alert_id(RECONNECT_STORM, writer, to_us(times[0])),
        kind=PIPELINE,
        rule_id=RECONNECT_STORM,
        subject=writer,
        message=f"stream writer {writer} ({symbols} symbols) reconnected {len(times)} times within {window:g} "
        f"minutes (the limit is {limit}), from {_utc(times[0])} to {_utc(times[-1])}: the connection to the "
        "exchange keeps failing; every reconnect is a gap the live fill has to fill",
        event_time=times[0],
        value=Decimal(len(times)),
    )


# audit_mismatch ---------------------------------------------------------------------------------------


def audit_mismatch(check: CheckInput) -> list[Alert]:
    if "candle_audit" not in relations(check, "marts"):
        return []
    rows = check.execute(
        "select audit.symbol, audit.interval, audit.open_time, audit.differences, audit.audited_at "
        f"from marts.candle_audit as audit where audit.status = {check.dialect.placeholder} "
        "order by audit.symbol, audit.interval, audit.open_time",
        [MISMATCH],
    )
    return [_mismatch(*row) for row in rows]


def _mismatch(symbol: str, interval: str, open_time: datetime, differences: str, audited_at: datetime) -> Alert:
    candle = f"{symbol} {interval} {open_time.astimezone(UTC):%Y-%m-%d %H:%M}"
    return Alert(
        alert_id=alert_id(AUDIT_MISMATCH, candle, to_us(audited_at)),
        kind=PIPELINE,
        rule_id=AUDIT_MISMATCH,
        subject=candle,
        message=f"the {candle} UTC candle differs from the exchange's kline: {differences}. Repair the interval, "
        "delete its row from marts.candle_audit and audit it again (dags/warehouse.py, audit)",
        event_time=audited_at,
        symbol=symbol,
        interval=interval,
        open_time=open_time,
    )


HEALTH_CHECKS: dict[str, PipelineCheck] = {
    STALE_SYMBOL: stale_symbol,
    INCOMPLETE_CANDLES: incomplete_candles,
    EXCHANGE_HOLE: exchange_hole,
    RECONNECT_STORM: reconnect_storm,
    AUDIT_MISMATCH: audit_mismatch,
}
