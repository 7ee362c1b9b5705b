"""
### Warehouse: the lake into `raw.trades` and the candles, exactly once, soon after each flush

Scheduled on the `lake_trades` Asset: the lake's watcher emits an event for every stream flush and
every repair, so a new micro-batch reaches the warehouse with the next run (one run at a time;
on a 2-core machine the candles trail the stream by tens of seconds), not at the end of a
stream window. Each run lists only the lake partitions that the write markers name since the last
load, so its cost follows what was written, not the size of the lake.

Every night at 00:30 UTC the same DAG runs a **reconcile**: it lists the whole lake, so a file that
no marker announced (its writer crashed between the two writes) is loaded too. Trigger the DAG
with `{"full": true}` to reconcile at once.

`WAREHOUSE` picks the backend. Both load only the files their ledger (`raw.load_ledger`) does not
name, and commit a file's rows with its ledger row: DuckDB (`DUCKDB_PATH`, the default) inserts
them, Snowflake runs `COPY INTO raw.trades` with explicit `FILES` and `FORCE` (its 64-day load
history plays no part). A re-run is a no-op. The first run after a Snowflake warehouse loaded
before the ledger is upgraded (setup V010 to V013) lists the whole lake and enters every file in the
ledger, adding only the trades `raw.trades` lacks; runs are incremental again once it went through.
The `warehouse_writer` pool has one slot: DuckDB allows one writing process, and on Snowflake it
keeps two loads from copying the same file at once.

Each run returns the files and rows it loaded. A file that is not a trade file of the contract is
refused by name and the run fails without retrying, after the other files loaded; the refusal is
remembered, so the next run is green unless another file is refused.

#### Transform: the candles, rendered by Cosmos

After the load, the `transform` task group is the dbt project (`include/dbt`): `stg_trades`, then
`candles_1m` and the larger intervals rolled up from it. One producer task (`dbt_producer_watcher`,
in the writer pool) runs one incremental `dbt build`, every model's tests included; each model's task
follows it and reports its model: it starts in the triggerer, which ends it green when dbt built the
model, red when it did not (`plugins/model_reports.py`: no task process per model). A failed test
fails the producer, whose log names the test, and the models' tasks are upstream_failed. To rebuild the marts
from scratch, run `python -m include.cli transform --full-refresh` (or clear the task group after a
full refresh). `include/transform_group.py` says why the watcher mode (DuckDB allows one writing
process) and why no task per model's tests (each cost a task process; the build already runs them).

The audit and the publish follow the producer, not the models' tasks: they need the build, not its
reports, and the chart's candles should not wait for a round of task processes.

The tests that read every trade (the keys of `stg_trades`, trade-id contiguity, the hourly volume
check, the raw source's columns), every row of a mart (its keys, nulls and candle invariants), or the
whole staging views of the stream's and the repair's status (their keys)
are tagged `nightly`: they cost more as the history grows, so the build after each micro-batch
leaves them out and `nightly_tests` runs them on the nightly reconcile (and on a run triggered with
`{"full": true}`; `is_nightly` decides, outside the writer pool, and skips it on every other run).
The build runs the same tests of the marts on the rows it rewrote, each key of those against the
whole mart. A failure fails its task, naming the test: after a micro-batch, a
rebuilt candle is wrong; at night, a candle may have gone bad outside a build.

#### Audit: the candles against the exchange

`audit` fetches the exchange's klines for every bucket that is closed and complete in the marts
(`is_complete`: no trade of it can be missing, by trade id) and not compared yet, for every symbol
and interval, and records each in `marts.candle_audit`. So a stream's buckets are audited as soon as
the ids around them are known, and those a gap touches once it is filled (by the live fill or the
hourly repair); an incomplete candle is never a mismatch. A candle that
differs fails the task naming the bucket and the fields, and it is **not retried**: the difference is
a fact to investigate (a trade missing from the lake, a bug), not a glitch. Look at
`select * from marts.candle_audit where status = 'mismatch'`, repair the interval
(`repair_gaps`, or clear its task), delete those rows from `marts.candle_audit` (a bucket recorded
there is not compared again), and re-run the audit for the range with
`python -m include.cli audit --symbol S --start T0 --end T1`.

#### Publish: the dashboard's snapshot

`publish` (in the writer pool, after the audit) copies the candle marts, `raw.stream_status`,
`raw.completeness`, `raw.gap_fills` and `marts.candle_audit` into a private file and moves it onto the published
snapshot (`DASHBOARD_SNAPSHOT`, default `data/dashboard/marts.duckdb`) in one rename: the dashboard
reads that file and never `warehouse.duckdb`, whose write lock a load holds every few seconds.
It runs whatever happened before it (`all_done`): a failed audit or load still leaves a warehouse
worth showing, and the dashboard's health panel is where it shows. `audit_failed`, beside it, runs
only when the audit failed and fails the run, so a successful publish never hides a failed audit.
On `WAREHOUSE=snowflake` publish is skipped: the dashboard reads the marts there with the reader role.
If it fails (it retries first): the dashboard keeps showing the previous snapshot, whole. Read the
task's log (a full disk, or a warehouse file it cannot open), fix that, and clear the task, or wait
for the next run, which publishes again. Leftover `.marts.duckdb.*.tmp` files of a crashed publish
are removed by the next one.

#### Deadline: a run not finished in time

A run not finished `WAREHOUSE_DEADLINE_SECONDS` (600) after it was queued has missed its deadline
(Airflow's `DeadlineAlert`, checked by the scheduler): its callback records the run in the lake
(`alerts/deadlines/dag=warehouse/<run_id>.json`) and the alerts DAG opens a `deadline_missed`
incident. It resolves by itself once trades loaded after the miss are in the candles (the next run
got through). **If it stays open**: look at the late run in the grid. A task waiting for the
`warehouse_writer` pool means another writer holds it (a long reconcile, a stuck build: its log says
where it is); a slow `load` means a backlog (after an outage) that the next runs will also feel. Mark
a hung task failed (or clear it) so the next run starts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, get_current_context, task
from alert_callbacks import NO_TASK_ALERTS, add_task_alert_callbacks, missed_deadline_alert, task_alert_callbacks
from cosmos import DbtTaskGroup
from lake_assets import LAKE_TRADES
from mart_assets import announce_marts
from model_reports import end_in_triggerer

from include.config import warehouse_deadline_when_parsed
from include.pools import WAREHOUSE_WRITER
from include.transform_group import (
    execution_config,
    model_tasks,
    operator_args,
    profile_config,
    project_config,
    render_config,
    wire_producer,
)


def is_reconcile(context: Any) -> bool:
    """The nightly run, or one triggered with {"full": true}."""
    return bool(context["params"]["full"]) or context["dag_run"].run_type == "scheduled"


# Outside the DAG function, to keep it short. all_done: the snapshot copies what the warehouse
# holds whatever failed before it (the health panel shows it). After the audit alone: the nightly
# tests change nothing the dashboard reads, and waiting for them would hold the nightly snapshot
# back by their length.
@task(pool=WAREHOUSE_WRITER.name, trigger_rule="all_done", retries=3)
def publish() -> dict[str, int]:
    """Publish the dashboard's read-only snapshot of the marts (DuckDB); skipped on Snowflake."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from include.config import ConfigError, load_settings
    from include.warehouse.snapshot import publish_snapshot

    try:
        settings = load_settings()
    except ConfigError as error:
        raise AirflowFailException(str(error)) from None  # retrying would not fix it
    published = publish_snapshot(settings)
    if published.path is None:
        raise AirflowSkipException(published.reason)
    print(f"published {published.path}: {published.rows}")
    return published.rows


# Airflow judges a run by its last tasks: with `publish` (all_done) after the audit, a failed audit
# would end in a successful run. This task runs only when the audit failed (one_failed), and fails.
@task(trigger_rule="one_failed", retries=0, **NO_TASK_ALERTS)  # the audit's own failure is the alert
def audit_failed() -> None:
    """Fails the run when the audit failed or could not run (its task names the difference)."""
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException("the audit failed or could not run: see the audit task's log")


@dag(
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("30 0 * * *", timezone="UTC"), assets=[LAKE_TRADES]),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    deadline=missed_deadline_alert(warehouse_deadline_when_parsed()),
    doc_md=__doc__,
    params={"full": Param(False, type="boolean", description="list the whole lake (a reconcile)")},
    tags=["cryptoflow", "warehouse", "load"],
    default_args={"retries": 3, "retry_delay": timedelta(seconds=10), "owner": "cryptoflow", **task_alert_callbacks()},
)
def warehouse() -> None:
    @task(pool=WAREHOUSE_WRITER.name)
    def load() -> dict[str, Any]:
        """Load every new lake file into raw.trades (the whole lake on the nightly reconcile)."""
        from contextlib import closing

        from airflow.sdk.exceptions import AirflowFailException

        from include.config import ConfigError, load_settings
        from include.lake.store import open_lake
        from include.warehouse.load import load_lake, open_warehouse

        context = get_current_context()
        full = is_reconcile(context)
        try:
            settings = load_settings()  # here, not at parse: a bad value fails this task, not every DAG
        except ConfigError as error:
            raise AirflowFailException(str(error)) from None  # retrying would not fix it
        with closing(open_warehouse(settings)) as target:
            result = load_lake(open_lake(settings.lake_url), target, full=full)
        print(result.summary())
        if result.refused:
            raise AirflowFailException(f"refused files (the rest loaded): {result.refused}")
        return result.as_dict()

    # The producer's one `dbt build` must not be retried by Airflow (Cosmos skips a second attempt);
    # a failed build is seen on the producer, and the next load's run builds again.
    transform = DbtTaskGroup(
        group_id="transform",
        project_config=project_config(),
        profile_config=profile_config(),
        execution_config=execution_config(),
        render_config=render_config(),
        operator_args=operator_args(),
        default_args={"retries": 0, **NO_TASK_ALERTS},  # the models' sensors: the producer's failure is the alert
    )
    built = wire_producer(transform, WAREHOUSE_WRITER.name)
    end_in_triggerer(model_tasks(transform), built.task_id)  # no task process per model's report
    announce_marts(built)  # its build built every candle mart: the alerts DAG follows their Assets
    add_task_alert_callbacks(built)

    @task(pool=WAREHOUSE_WRITER.name, retries=0)
    def audit() -> dict[str, int]:
        """Compare each closed, complete candle not audited yet with its kline; a difference fails, unretried."""
        from contextlib import closing

        from airflow.sdk.exceptions import AirflowFailException

        from include.binance.client import BinanceClient
        from include.config import load_settings
        from include.warehouse.audit import audit_closed_candles
        from include.warehouse.load import open_warehouse

        settings = load_settings()
        with BinanceClient(settings.rest_url) as client, closing(open_warehouse(settings)) as warehouse:
            result = audit_closed_candles(warehouse.execute, warehouse.dialect, client)
        print(result.as_dict())
        if result.failed:
            raise AirflowFailException(f"candles differ from the exchange: {result.first_differences()}")
        return result.as_dict()

    # Out of the writer pool: a task that only decides to skip held the pool's one slot for seconds
    # after every micro-batch, and the dashboard's publish and the next load waited behind it.
    @task.short_circuit
    def is_nightly() -> bool:
        """Whether this run is the nightly reconcile (or one triggered with {"full": true})."""
        return is_reconcile(get_current_context())

    @task(pool=WAREHOUSE_WRITER.name, retries=0)
    def nightly_tests() -> dict[str, object]:
        """On the reconcile only: the dbt tests that read every trade or every row of a mart (tagged nightly)."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.config import load_settings
        from include.transform import NIGHTLY_TAG, TransformFailed, transform

        try:
            result = transform(load_settings(), select=[f"tag:{NIGHTLY_TAG}"], command="test")
        except TransformFailed as error:
            raise AirflowFailException(str(error)) from None
        print(result.as_dict())
        return result.as_dict()

    audited = audit()
    load() >> transform
    nightly = is_nightly()
    built >> [audited, nightly]
    nightly >> nightly_tests()
    audited >> [publish(), audit_failed()]


warehouse()
