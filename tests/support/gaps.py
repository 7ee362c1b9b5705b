"""The stream's gap records and the live fill's records, read back from a lake as tests judge them."""

from __future__ import annotations

import json
from typing import Any

from include.lake.keys import GAP_FILLS_PREFIX, GAPS_PREFIX
from include.lake.store import ObjectStore
from include.lake.trades import read_trades


def gap_records(lake: ObjectStore, symbol: str | None = None) -> list[dict[str, Any]]:
    """Every gap record in the lake (of ``symbol``, or all), by first id, each with its ``key``."""
    records = [
        {**json.loads(lake.get(info.key)), "key": info.key}
        for info in lake.list(GAPS_PREFIX)
        if info.key.endswith(".json")
    ]
    return sorted((r for r in records if symbol is None or r["symbol"] == symbol), key=lambda r: r["first_id"])


def fill_records(lake: ObjectStore, symbol: str | None = None) -> list[dict[str, Any]]:
    records = [
        {**json.loads(lake.get(info.key)), "key": info.key}
        for info in lake.list(GAP_FILLS_PREFIX)
        if info.key.endswith(".json")
    ]
    return sorted((r for r in records if symbol is None or r["symbol"] == symbol), key=lambda r: r["first_id"])


def ids_of(records: list[dict[str, Any]]) -> set[int]:
    """The ids the records say are missing (both ends included)."""
    return {i for r in records for i in range(r["first_id"], r["last_id"] + 1)}


def lake_id_set(lake: ObjectStore, symbol: str, source: str | None = None) -> set[int]:
    table = read_trades(lake, symbol)
    if source is not None:
        table = table.filter(table["source"].to_numpy(zero_copy_only=False) == source)
    return set(table["trade_id"].to_pylist())


def objects(lake: ObjectStore, prefix: str) -> dict[str, str]:
    """Key -> ETag of every object under ``prefix``: equal before and after means nothing was written."""
    return {info.key: info.etag for info in lake.list(prefix)}
