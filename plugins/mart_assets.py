"""The candle marts as Airflow Assets: the warehouse DAG's dbt producer emits them when its build (which
builds every mart) succeeded, and the ``alerts`` DAG is scheduled on them.

On the producer, not on each model's task: the producer's one ``dbt build`` has built every mart when
it ends, while the models' tasks report it in three layers of task processes after it (staging, then
candles_1m, then the roll-ups), seconds that every market alert would wait for (issue 23: an alert
within 30 s of its candle's close). Cosmos gives each model task an AssetAlias too, but on Airflow 3
the Assets behind it come from OpenLineage, which is not installed: it emits none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import Asset

from include.candles import INTERVALS

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

CANDLE_MARTS: dict[str, Asset] = {
    interval.mart: Asset(name=interval.mart, uri=f"cryptoflow://warehouse/marts/{interval.mart}", group="marts")
    for interval in INTERVALS
}


def announce_marts(producer: BaseOperator) -> None:
    """Make the dbt producer emit every candle mart's Asset when its build succeeds."""
    producer.outlets = [*producer.outlets, *CANDLE_MARTS.values()]
