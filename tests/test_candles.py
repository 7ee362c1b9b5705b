"""include/candles.py is the one definition of a candle: dbt's marts must be exactly its intervals and columns."""

from __future__ import annotations

import json
from datetime import timedelta

from include.candles import BY_NAME, CANDLE_COLUMN_NAMES, INTERVAL_NAMES, MINUTE
from include.transform import MANIFEST_PATH  # `make test` builds it before pytest


def mart_models() -> dict[str, dict]:
    nodes = json.loads(MANIFEST_PATH.read_text())["nodes"].values()
    return {node["name"]: node for node in nodes if node["resource_type"] == "model" and "marts" in node["fqn"]}


def test_the_marts_dbt_knows_are_exactly_the_candle_intervals():
    assert sorted(mart_models()) == sorted(BY_NAME[name].mart for name in INTERVAL_NAMES)


def test_every_mart_documents_exactly_the_candle_columns_in_order():
    for name, node in mart_models().items():
        assert list(node["columns"]) == list(CANDLE_COLUMN_NAMES), name


def test_each_mart_names_its_interval_and_not_a_length():
    for name, node in mart_models().items():
        interval = name.removeprefix("candles_")
        assert f"candles('{interval}')" in node["raw_code"].replace('"', "'"), name
        assert str(BY_NAME[interval].length_us) not in node["raw_code"], name


def test_intervals_are_whole_minutes_smallest_first():
    lengths = [BY_NAME[name].length for name in INTERVAL_NAMES]
    assert lengths == sorted(lengths)
    assert lengths[0] == MINUTE.length
    assert all(length % MINUTE.length == timedelta(0) for length in lengths)
