"""Load the lake into the configured warehouse: every trade file exactly once, and the status objects."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from include.config import Settings
from include.lake.heartbeats import prune_stale as prune_stale_heartbeats
from include.lake.keys import partition_of
from include.lake.markers import PARTITION_MEMORY
from include.lake.store import ObjectStore
from include.timeutil import to_us
from include.warehouse.base import Warehouse
from include.warehouse.discover import discover, prune_stale_markers
from include.warehouse.shared import LoadResult

log = logging.getLogger(__name__)


def open_warehouse(settings: Settings) -> Warehouse:
    """The backend ``WAREHOUSE`` names: DuckDB at ``DUCKDB_PATH``, or Snowflake via ``SNOWFLAKE_CONN_ID``."""
    if settings.warehouse == "snowflake":
        from include.warehouse.snowflake_backend import SnowflakeWarehouse

        return SnowflakeWarehouse(settings.snowflake_conn_id)
    from include.warehouse.duckdb_backend import DuckDBWarehouse

    return DuckDBWarehouse(settings.duckdb_path)


def _load_what_replaced_the_vanished(lake: ObjectStore, warehouse: Warehouse, result: LoadResult) -> None:
    """A file listed and gone before its read was compacted away: its partition now holds the
    compacted file, which no write marker announces. It is loaded now (only the ids raw.trades
    lacks), not left for the nightly reconcile, as this load's cursor consumes the markers that
    named the partition. A stream batch gone so was split: the split's marker, written before it
    deleted the batch, names the symbols' partitions for this load or the next."""
    partitions = sorted({partition_of(key) for key in result.vanished})
    if not partitions:
        return
    again = [info for partition in partitions for info in lake.list(partition) if info.key.endswith(".parquet")]
    more = warehouse.load(lake, again)
    result.files_loaded += more.files_loaded
    result.rows_loaded += more.rows_loaded
    result.refused += more.refused
    result.compacted += more.compacted


def load_lake(lake: ObjectStore, warehouse: Warehouse, full: bool = False) -> LoadResult:
    """Load what was written since the last load, then refresh raw.stream_status and raw.completeness;
    ``full`` lists (reconciles) the whole lake."""
    found = discover(lake, warehouse.read_cursor(), full=full)
    result = warehouse.load(lake, found.files)
    _load_what_replaced_the_vanished(lake, warehouse, result)
    # After the loads, outside them: an error here can never make a loaded file look refused.
    warehouse.forget_replaced(lake, result.compacted)
    status = warehouse.refresh_status(lake)
    result.status_objects = status.objects_read
    result.refused += status.refused
    # Saved only after the load: a load that fails part way is listed again by the next one.
    warehouse.save_cursor(found.cursor)
    result.files_listed = len(found.files)
    result.partitions_listed = None if found.partitions is None else len(found.partitions)
    if found.partitions is None:
        horizon = to_us(datetime.now(UTC) - PARTITION_MEMORY)
        forgotten = warehouse.forget_gone_batches([info.key for info in found.files], horizon)
        log.info("forgot the ledger rows of %d stream batches split away", forgotten)
        for key in prune_stale_markers(lake, found.cursor):
            log.info("deleted the stale write marker %s", key)
        for key in prune_stale_heartbeats(lake):
            log.info("deleted the stale stream heartbeat %s", key)
    return result
