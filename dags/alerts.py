"""
### Alerts: the market rules and the pipeline's health, evaluated after each transform, delivered once

Scheduled on the candle marts' Assets (the warehouse DAG's dbt producer emits them when its build,
which builds all six, succeeded: `plugins/mart_assets.py`), so a run follows every transform; and
every minute besides, so the pipeline checks and the deliveries still run when no candle is built (a
stalled stream is exactly when no transform runs). One run at a time.

One task, `evaluate_and_deliver`, in the `warehouse_writer` pool (it writes to the warehouse):

1. It reads the rules of `ALERT_RULES` (default `include/alerts/rules.yaml`) and the dashboard's (the
   lake's `alerts/rules/`), evaluates each on the closed, complete candles of its symbol and interval,
   runs the pipeline checks (tasks failed after their retries, stale symbols, candles incomplete too
   long, exchange-side holes, reconnect storms, dbt test failures, audit mismatches), stores what fired
   in `marts.alerts` (once per id: a re-run fires nothing new) and resolves the incidents that ended. A
   refused rule is named in the log and the others run; fix it (`python -m include.cli alerts check`) or
   remove it on the dashboard.
2. It sends every event a channel has not received (`marts.alert_deliveries` is the outbox) through
   the Airflow notifiers of the channels that are configured: the webhook connection
   `ALERT_WEBHOOK_CONN_ID` (Slack-compatible JSON) and e-mail over the SMTP connection `ALERT_SMTP_CONN_ID`
   to `ALERT_EMAIL_TO`. A failed send is recorded, named in the log as a warning, and sent again by the
   next run (every minute at least), for `DELIVERY_HORIZON`. The task does not fail for it: a failed
   task would hold the DAG's one run in its retries, and a dead channel would hold back the evaluation
   of every new candle and the other channel. A delivered event is recorded and never
   sent again. The warehouse is open only to read what is pending and to record what happened, never
   while sending; each channel gets 30 s of sending per run, the rest waits for the next.
3. When anything fired, resolved or was delivered, it publishes the dashboard's snapshot (DuckDB), as
   the warehouse DAG does after each transform: a stalled stream runs no transform, and its incident
   must still reach the page.

**If alerts are not delivered**: the task's log (its WARNING lines) and the dashboard's "Delivery
history" name the channel and the error (a webhook down, an SMTP login refused). Fix the connection;
nothing is lost meanwhile, and the next run delivers what is pending.
**To see alerts**: the dashboard's Alerts section, or `select * from marts.alerts order by fired_at desc`.
**By hand**: `python -m include.cli alerts evaluate`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task
from alert_callbacks import task_alert_callbacks
from mart_assets import CANDLE_MARTS

from include.pools import WAREHOUSE_WRITER


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("* * * * *", timezone="UTC"), assets=list(CANDLE_MARTS.values())
    ),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cryptoflow", "alerts"],
    default_args={"retries": 3, "retry_delay": timedelta(seconds=5), "owner": "cryptoflow", **task_alert_callbacks()},
)
def alerts() -> None:
    # One task, not an evaluation and a delivery: both need the warehouse_writer pool's one slot, and a
    # second task waited behind the warehouse DAG's next tasks for it (up to 14 s measured). The
    # priority puts it before them: it holds the slot for about a second.
    @task(
        pool=WAREHOUSE_WRITER.name,
        priority_weight=100,
        weight_rule="absolute",
        retries=2,  # the warehouse or the lake unreachable: a failed send is not a failure (docstring)
        retry_delay=timedelta(seconds=10),
    )
    def evaluate_and_deliver() -> dict[str, Any]:
        """Evaluate every rule and pipeline check once, store what fired, resolve what ended; then send
        every pending event to each configured channel. A failed send waits for the next run."""
        from airflow.sdk.exceptions import AirflowFailException
        from alert_notifiers import alert_senders

        from include.alerts.run import run_alerts
        from include.config import ConfigError, load_settings

        try:
            settings = load_settings()
        except ConfigError as error:
            raise AirflowFailException(str(error)) from None  # retrying would not fix it
        result = run_alerts(settings, alert_senders(settings))
        for problem in [*map(str, result.evaluated.refused), *result.evaluated.failed_checks]:
            print(f"WARNING: {problem}")
        print(result.as_dict())
        for failure in result.delivered.failed:  # recorded in the outbox: the next run sends it again
            print(f"WARNING: not delivered yet: {failure}")
        return {"fired": len(result.evaluated.fired), "resolved": len(result.evaluated.resolved)}

    evaluate_and_deliver()


alerts()
