"""The lake's status objects in the warehouse: ``raw.stream_status``, ``raw.completeness``, ``raw.gap_fills``.

Every load refreshes them from the small JSON objects the product keeps in the lake: the stream
heartbeats (``status/stream/...``, one per stream writer holding each of its symbols' status,
include/lake/heartbeats.py; a symbol's row is its newest among the changed ones), the
completeness ledger (``status/completeness/...``, one per symbol and window, include/repair/ledger.py)
and the live gap fills (``status/gap_fills/...``, one per gap the stream saw). dbt's candles read
them to know how far each symbol's coverage reaches, and which trade ids exist (docs/architecture.md,
"The live edge": the anchors and the exchange-side holes).

Only objects whose ETag changed since the last refresh are read: the ETags consumed are kept in
``raw.status_files``. Each changed object replaces its row (a symbol's, or a window's), in one
transaction with its cursor entry, so a re-run changes nothing and a rewritten window replaces its
row. The listing itself still covers the whole ledger and every gap fill (one LIST request per 1000
objects): their writers do not name them in a write marker, so there is no cheaper way to learn of a
rewritten one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from include.lake.heartbeats import symbol_statuses
from include.lake.keys import GAP_FILLS_PREFIX, HEARTBEAT_PREFIX, LEDGER_PREFIX, partition_values
from include.lake.store import ObjectInfo, ObjectStore
from include.warehouse.shared import Dialect, Execute, StatusRefresh
from include.warehouse.sql import in_transaction, row_chunks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatusTable:
    """One raw status table: where its objects are, its columns, and which of them identify a row."""

    name: str
    prefix: str
    columns: tuple[str, ...]
    key_columns: tuple[str, ...]
    timestamps: frozenset[str]  # columns bound as ISO text and cast to the dialect's timestamp
    rows: Callable[[str, dict[str, Any]], list[tuple]]  # (object key, parsed body) -> rows, without loaded_at
    newest_by: str | None = None  # of two rows with one key, the one with the latest value of this column


def _heartbeat_rows(key: str, body: dict[str, Any]) -> list[tuple]:
    """A writer's heartbeat: a row per symbol it streams."""
    exchange = partition_values(key)["exchange"]
    return [
        (
            exchange,
            status["symbol"],
            status["updated_at"],
            status["last_trade_id"],
            status["last_trade_time"],
            status["lag_seconds"],
            None if status.get("connection") is None else json.dumps(status["connection"], sort_keys=True),
        )
        for status in symbol_statuses(body)
    ]


def _one(row: Callable[[str, dict[str, Any]], tuple]) -> Callable[[str, dict[str, Any]], list[tuple]]:
    """A status object that is one row."""
    return lambda key, body: [row(key, body)]


def _window_row(key: str, body: dict[str, Any]) -> tuple:
    holes = [int(hole) for hole in body["holes"]]
    return (
        partition_values(key)["exchange"],
        body["symbol"],
        body["start"],
        body["end"],
        body["expected"],
        body["present_before"],
        body["filled"],
        json.dumps(holes),
        len(holes),
        len(body.get("refused", [])),
        body["missing"],
        body.get("checked_at") or None,
        _optional_id(body.get("first_id")),
        _optional_id(body.get("end_id")),
    )


def _trade_id(value: object) -> int:
    """A trade id of a status object: an integer; anything else (None, a string, a bool) is refused."""
    if type(value) is not int:
        raise TypeError(f"a trade id must be an integer, not {value!r}")
    return value


def _optional_id(value: object) -> int | None:
    return None if value is None else _trade_id(value)


def _gap_fill_row(key: str, body: dict[str, Any]) -> tuple:
    holes = [int(hole) for hole in body["holes"]]
    return (
        partition_values(key)["exchange"],
        body["symbol"],
        _trade_id(body["first_id"]),
        _trade_id(body["last_id"]),
        body.get("since") or None,
        body["filled"],
        json.dumps(holes),
        len(holes),
        body["missing"],
        body.get("checked_at") or None,
    )


STREAM_STATUS = StatusTable(
    "raw.stream_status",
    HEARTBEAT_PREFIX,
    ("exchange", "symbol", "updated_at", "last_trade_id", "last_trade_time", "lag_seconds", "connection"),
    ("exchange", "symbol"),
    frozenset({"updated_at", "last_trade_time"}),
    _heartbeat_rows,
    newest_by="updated_at",
)
COMPLETENESS = StatusTable(
    "raw.completeness",
    LEDGER_PREFIX,
    (
        "exchange",
        "symbol",
        "window_start",
        "window_end",
        "expected",
        "present_before",
        "filled",
        "holes",
        "hole_count",
        "refused_count",
        "missing",
        "checked_at",
        "first_id",  # the window's expected ids are [first_id, end_id)
        "end_id",
    ),
    ("exchange", "symbol", "window_start"),
    frozenset({"window_start", "window_end", "checked_at"}),
    _one(_window_row),
)
GAP_FILLS = StatusTable(
    "raw.gap_fills",
    GAP_FILLS_PREFIX,
    ("exchange", "symbol", "first_id", "last_id", "since", "filled", "holes", "hole_count", "missing", "checked_at"),
    ("exchange", "symbol", "first_id", "last_id"),
    frozenset({"since", "checked_at"}),
    _one(_gap_fill_row),
)
STATUS_TABLES = (STREAM_STATUS, COMPLETENESS, GAP_FILLS)


def _utc(moment: datetime) -> datetime:
    """An instant as an aware UTC datetime (a connector may hand back a naive one, in UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class StatusLoader:
    """Refresh the status tables of one warehouse, through its ``execute`` and its dialect."""

    def __init__(self, execute: Execute, dialect: Dialect) -> None:
        self.execute = execute
        self.dialect = dialect

    def _value(self, column: str, table: StatusTable) -> str:
        placeholder = self.dialect.placeholder
        return f"cast({placeholder} as {self.dialect.timestamp_type})" if column in table.timestamps else placeholder

    def refresh(self, lake: ObjectStore) -> StatusRefresh:
        """Read the changed status objects and replace their rows, all in one transaction."""
        consumed = {key: etag for key, etag in self.execute("select file_key, etag from raw.status_files")}
        result = StatusRefresh()
        changes: list[tuple[StatusTable, list[tuple], list[ObjectInfo]]] = []
        for table in STATUS_TABLES:
            changed = [
                info
                for info in lake.list(table.prefix)
                if info.key.endswith(".json") and consumed.get(info.key) != info.etag
            ]
            if changed:
                rows = self._newest_rows(table, self._rows(lake, table, changed, result))
                changes.append((table, rows, changed))
                result.objects_read += len(changed)
        if changes:
            in_transaction(self.execute, self.dialect, lambda: self._replace_all(changes, result))
        return result

    def _newest_rows(self, table: StatusTable, rows: list[tuple]) -> list[tuple]:
        """One row per key, the newest by ``newest_by``, and none older than the stored row of its key.

        Two objects name one key while two stream writers' windows overlap; and a heartbeat that
        changed after another writer's newer one (a writer's clock behind) never turns a symbol back."""
        if table.newest_by is None or not rows:
            return rows
        keys = ", ".join(table.key_columns)
        newest = {
            tuple(found[:-1]): _utc(found[-1])
            for found in self.execute(f"select {keys}, {table.newest_by} from {table.name}")
        }
        key_index = [table.columns.index(column) for column in table.key_columns]
        at = table.columns.index(table.newest_by)
        kept: dict[tuple, tuple] = {}
        for row in rows:
            key, moment = tuple(row[i] for i in key_index), _utc(datetime.fromisoformat(row[at]))
            if key not in newest or moment >= newest[key]:
                newest[key], kept[key] = moment, row
        return list(kept.values())

    def _replace_all(
        self, changes: list[tuple[StatusTable, list[tuple], list[ObjectInfo]]], result: StatusRefresh
    ) -> None:
        # One instant for every row of the refresh, as text: both connectors bind it the same way.
        loaded_at = self.execute("select current_timestamp")[0][0].isoformat()
        for table, rows, infos in changes:
            self._replace(table, rows, infos, loaded_at)
            result.rows_written += len(rows)

    def _rows(
        self, lake: ObjectStore, table: StatusTable, infos: list[ObjectInfo], result: StatusRefresh
    ) -> list[tuple]:
        """Each object's row. A bad one is refused by name, once: its ETag joins the cursor all the same,
        so it is read again only when it is rewritten."""
        rows = []
        for info in infos:
            try:
                rows += table.rows(info.key, json.loads(lake.get(info.key)))
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                message = f"{info.key}: not a status object of {table.name} ({type(error).__name__}: {error})"
                log.error("refused %s", message)
                result.refused.append(message)
        return rows

    def _replace(self, table: StatusTable, rows: list[tuple], infos: list[ObjectInfo], loaded_at: str) -> None:
        """Each row replaces the row with its key, and the objects' ETags join the cursor."""
        match = " and ".join(f"{column} = {self._value(column, table)}" for column in table.key_columns)
        key_index = [table.columns.index(column) for column in table.key_columns]
        values = "(" + ", ".join([*(self._value(c, table) for c in table.columns), self._loaded_at()]) + ")"
        for chunk in row_chunks(rows):
            condition = " or ".join(f"({match})" for _ in chunk)
            self.execute(f"delete from {table.name} where {condition}", [row[i] for row in chunk for i in key_index])
            self.execute(
                f"insert into {table.name} ({', '.join(table.columns)}, loaded_at) values "
                + ", ".join([values] * len(chunk)),
                [value for row in chunk for value in (*row, loaded_at)],
            )
        placeholder = self.dialect.placeholder
        for chunk in row_chunks(infos):
            self.execute(
                "delete from raw.status_files where file_key in (" + ", ".join([placeholder] * len(chunk)) + ")",
                [info.key for info in chunk],
            )
            self.execute(
                "insert into raw.status_files (file_key, etag) values "
                + ", ".join([f"({placeholder}, {placeholder})"] * len(chunk)),
                [value for info in chunk for value in (info.key, info.etag)],
            )

    def _loaded_at(self) -> str:
        return f"cast({self.dialect.placeholder} as {self.dialect.timestamp_type})"
