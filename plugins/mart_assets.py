"""The candle marts as Airflow Assets: each model's task in the warehouse DAG's ``transform`` group
emits its mart's Asset when the build built it, and the ``alerts`` DAG is scheduled on them.

Cosmos gives each model task an AssetAlias, but on Airflow 3 the Assets behind it come from
OpenLineage, which is not installed here: without these outlets no event would say the candles are new.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import Asset

from include.candles import INTERVALS

if TYPE_CHECKING:
    from cosmos import DbtTaskGroup

CANDLE_MARTS: dict[str, Asset] = {
    interval.mart: Asset(name=interval.mart, uri=f"cryptoflow://warehouse/marts/{interval.mart}", group="marts")
    for interval in INTERVALS
}


def announce_marts(group: DbtTaskGroup) -> None:
    """Make each candle mart's model task (``<group>.<mart>_run``) emit its mart's Asset."""
    for task in group.iter_tasks():
        model = task.task_id.removeprefix(f"{group.group_id}.").removesuffix("_run")
        if model in CANDLE_MARTS:
            task.outlets = [*task.outlets, CANDLE_MARTS[model]]
