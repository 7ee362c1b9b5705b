"""Every key layout of the lake, in one place (docs/architecture.md, "Lake keys").

Keys are deterministic: writing the same data twice writes the same object. Partitions are Hive
style (``name=value``) so that a listing of one symbol, day or hour is a listing of one prefix.

    trades/exchange=binance/symbol=BTCUSDT/date=2026-11-24/hour=13/<source>-<first_id>-<last_id>.parquet
        (<source>: backfill, replay; split: a stream batch's trades of the symbol-hour, include/lake/split.py;
         compact: the hour's files in one, include/lake/compaction.py)
    trades/exchange=binance/batch/date=2026-11-24/hour=13/<first_us>_<last_us>_<flushed_us>_<writer>.parquet
        a stream writer's flush: every symbol of its shard in one object (hour: of its first trade)
    quarantine/exchange=binance/date=2026-11-24/hour=13/<writer>-<received_us>-<count>.jsonl
    status/stream/exchange=binance/writer=<writer>.json          a stream writer's heartbeat (its symbols)
    status/completeness/exchange=binance/symbol=BTCUSDT/date=2026-11-24/20261124T130000Z.json
    status/gaps/exchange=binance/symbol=BTCUSDT/date=2026-11-24/<first_id>-<last_id>-<writer>.json
    status/gap_fills/exchange=binance/symbol=BTCUSDT/date=2026-11-24/<first_id>-<last_id>.json
    status/writes/<writer>.json                                  a write marker per writer
    status/gap_writes/<writer>.json                              a gap marker per writer (gaps it recorded)
    status/watchers/<name>.json                                  what an asset watcher last announced
    alerts/rules/<rule_id>.json                                  a market alert rule added on the dashboard
    alerts/task_failures/dag=<dag>/task=<task>/<map_index>/<run_id>.<try>.json
        a task that failed after its retries (removed when that task next succeeds)
    alerts/deadlines/dag=<dag>/<run_id>.json
        a DAG run that missed its deadline (include/alerts/missed_deadlines.py)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from include.timeutil import from_us, to_us

EXCHANGE = "binance"
TRADES_PREFIX = "trades/"
QUARANTINE_PREFIX = "quarantine/"
HEARTBEAT_PREFIX = "status/stream/"
LEDGER_PREFIX = "status/completeness/"
GAPS_PREFIX = "status/gaps/"  # a gap the stream saw, as it happened (one object per gap and writer)
GAP_FILLS_PREFIX = "status/gap_fills/"  # what the live fill fetched for a gap: filled, holes, missing
WRITES_PREFIX = "status/writes/"
GAP_WRITES_PREFIX = (
    "status/gap_writes/"  # a marker per writer naming the gap records it wrote: the gap watcher's folder
)
WATCHERS_PREFIX = "status/watchers/"
ALERT_RULES_PREFIX = "alerts/rules/"  # the dashboard's market rules, one object per rule
TASK_FAILURES_PREFIX = "alerts/task_failures/"  # one object per failed task instance, until it recovers
MISSED_DEADLINES_PREFIX = "alerts/deadlines/"  # one object per DAG run that missed its deadline
_TRADE_FILE = re.compile(r"/[a-z]+-(\d+)-(\d+)\.parquet$")
_BATCH_FILE = re.compile(r"(\d+)_(\d+)_(\d+)_(.+)\.parquet")  # <first_us>_<last_us>_<flushed_us>_<writer>
COMPACT_SOURCE = "compact"  # the <source> in the name of a compacted symbol-hour's file
SPLIT_SOURCE = "split"  # the <source> in the name of a symbol-hour's trades split out of stream batches
BATCH_PREFIX = f"{TRADES_PREFIX}exchange={EXCHANGE}/batch/"


def symbol_prefix(symbol: str) -> str:
    """Every trade file of a symbol lies below this prefix."""
    return f"{TRADES_PREFIX}exchange={EXCHANGE}/symbol={symbol}/"


def hour_prefix(symbol: str, hour_start_us: int) -> str:
    """The partition of a symbol's trade files of one UTC hour."""
    hour = from_us(hour_start_us)
    return f"{symbol_prefix(symbol)}date={hour:%Y-%m-%d}/hour={hour:%H}/"


def trade_key(symbol: str, hour_start_us: int, source: str, first_id: int, last_id: int) -> str:
    """The key of a trade file: one symbol, one UTC hour, the ids it holds."""
    return f"{hour_prefix(symbol, hour_start_us)}{source}-{first_id}-{last_id}.parquet"


def batch_key(writer: str, first_time_us: int, last_time_us: int, flushed_us: int) -> str:
    """A stream writer's flush: every symbol of its shard in one object, under the hour of its first trade.

    The name carries the trade times it spans, so a reader picks the batches of a time range from a
    listing; the flush time and the writer make it unique (a writer flushes one batch at a time)."""
    hour = from_us(first_time_us)
    return (
        f"{BATCH_PREFIX}date={hour:%Y-%m-%d}/hour={hour:%H}/"
        f"{first_time_us}_{last_time_us}_{flushed_us}_{writer}.parquet"
    )


def batch_times_of_key(key: str) -> tuple[int, int] | None:
    """``(first, last)`` trade time (µs) of a stream batch, from its name; None for any other key
    (a name under ``batch/`` not made by ``batch_key`` is no batch: readers pass it by)."""
    match = _BATCH_FILE.fullmatch(key.rsplit("/", 1)[-1]) if key.startswith(BATCH_PREFIX) else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def split_writer(partition: str) -> str:
    """The writer the hourly split names its marker after, for one batch partition: its marker's
    existence says the hour was split, so a batch landing there later is late (include/lake/split.py)."""
    values = partition_values(partition)
    return f"split-{values['date']}T{values['hour']}"


def partition_values(key: str) -> dict[str, str]:
    """The ``name=value`` parts of a lake key (the last one without its ``.json``): {"symbol": ...}."""
    return dict(part.removesuffix(".json").split("=", 1) for part in key.split("/") if "=" in part)


def hour_of_key(key: str) -> int:
    """Start (µs) of the hour a trade file covers, from its ``date=``/``hour=`` partitions."""
    parts = partition_values(key)
    moment = datetime.strptime(f"{parts['date']} {parts['hour']}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    return to_us(moment)


def partition_of(key: str) -> str:
    """The partition prefix of a lake key: everything up to and including the last "/" ("" if none)."""
    return key[: key.rfind("/") + 1]


def quarantine_key(writer: str, received_us: int, count: int) -> str:
    moment = from_us(received_us)
    return (
        f"{QUARANTINE_PREFIX}exchange={EXCHANGE}/date={moment:%Y-%m-%d}/hour={moment:%H}/"
        f"{writer}-{received_us}-{count}.jsonl"
    )


def heartbeat_key(writer: str) -> str:
    """A stream writer's heartbeat: the status of every symbol it streams (include/lake/heartbeats.py)."""
    return f"{HEARTBEAT_PREFIX}exchange={EXCHANGE}/writer={writer}.json"


def ledger_symbol_prefix(symbol: str) -> str:
    return f"{LEDGER_PREFIX}exchange={EXCHANGE}/symbol={symbol}/"


def report_key(symbol: str, start: datetime) -> str:
    """The completeness ledger's record of one symbol's window."""
    return f"{ledger_symbol_prefix(symbol)}date={start:%Y-%m-%d}/{start:%Y%m%dT%H%M%SZ}.json"


def gap_symbol_prefix(symbol: str) -> str:
    return f"{GAPS_PREFIX}exchange={EXCHANGE}/symbol={symbol}/"


def gap_key(symbol: str, detected: datetime, first_id: int, last_id: int, writer: str) -> str:
    """A gap the stream writer ``writer`` saw: ids ``first_id..last_id`` (both included) are missing."""
    return f"{gap_symbol_prefix(symbol)}date={detected:%Y-%m-%d}/{first_id}-{last_id}-{writer}.json"


def gap_ids_of_key(key: str) -> tuple[int, int]:
    """``(first_id, last_id)`` of a gap record, from its name ``<first_id>-<last_id>-<writer>.json``."""
    first_id, last_id, _writer = key.rsplit("/", 1)[-1].split("-", 2)
    return int(first_id), int(last_id)


def gap_fill_symbol_prefix(symbol: str) -> str:
    return f"{GAP_FILLS_PREFIX}exchange={EXCHANGE}/symbol={symbol}/"


def gap_fill_key(symbol: str, detected: datetime, first_id: int, last_id: int) -> str:
    """The live fill's record of the gap ``first_id..last_id``, under the date the gap was seen."""
    return f"{gap_fill_symbol_prefix(symbol)}date={detected:%Y-%m-%d}/{first_id}-{last_id}.json"


def marker_key(writer: str, prefix: str = WRITES_PREFIX) -> str:
    """A writer's marker: of its trade writes (``status/writes/``) or of its gap records (``status/gap_writes/``)."""
    return f"{prefix}{writer}.json"


def ids_of_key(key: str) -> tuple[int, int] | None:
    """``(first_id, last_id)`` of a trade file, from its name ``<source>-<first_id>-<last_id>.parquet``;
    None for a key not named so (not a trade file)."""
    match = _TRADE_FILE.search(key)
    return (int(match.group(1)), int(match.group(2))) if match else None


def is_compacted(key: str) -> bool:
    """Whether a trade file is a compacted symbol-hour (its rows may already be in the warehouse)."""
    return key.rsplit("/", 1)[-1].startswith(f"{COMPACT_SOURCE}-")


def is_rewritten(key: str) -> bool:
    """Whether a trade file rewrites rows the lake held before (compacted, or split out of stream
    batches): the warehouse most likely holds its rows already, so it loads only the ids it lacks."""
    return is_compacted(key) or key.rsplit("/", 1)[-1].startswith(f"{SPLIT_SOURCE}-")


def watcher_key(name: str) -> str:
    return f"{WATCHERS_PREFIX}{name}.json"


def alert_rule_key(rule_id: str) -> str:
    """A dashboard rule's own object: adding or removing one rule touches no other."""
    return f"{ALERT_RULES_PREFIX}{rule_id}.json"


def _safe(part: str) -> str:
    """An Airflow id or run id as one key segment (run ids hold ``:`` and ``+``)."""
    return re.sub(r"[^A-Za-z0-9._=-]", "_", part)


def task_failures_prefix(dag_id: str, task_id: str, map_index: int) -> str:
    """Where the failures of one task (one mapped instance) are kept until it succeeds again."""
    return f"{TASK_FAILURES_PREFIX}dag={_safe(dag_id)}/task={_safe(task_id)}/{map_index}/"


def task_failure_key(dag_id: str, task_id: str, map_index: int, run_id: str, try_number: int) -> str:
    """One failed task instance's record: its own key (two failures never share one)."""
    return f"{task_failures_prefix(dag_id, task_id, map_index)}{_safe(run_id)}.{try_number}.json"


def missed_deadlines_prefix(dag_id: str) -> str:
    """Where the missed deadlines of one DAG's runs are kept."""
    return f"{MISSED_DEADLINES_PREFIX}dag={_safe(dag_id)}/"


def missed_deadline_key(dag_id: str, run_id: str) -> str:
    """One run's missed deadline: a run has one deadline, so writing it again writes the same object."""
    return f"{missed_deadlines_prefix(dag_id)}{_safe(run_id)}.json"
