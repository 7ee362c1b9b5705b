"""Which dbt tests the build after each micro-batch runs (``PER_BATCH_EXCLUDE``), read from the manifest
that `make test` builds: the marts' tests of the rows the build rewrote, and no test of a staging model.

The staging models' tests read whole views or every trade; their nodes cost the build after every
micro-batch seconds on the path of every candle and market alert (issue 23), so the nightly reconcile
runs them instead (``nightly_tests``).
"""

from __future__ import annotations

import json

import pytest

from include.transform import MANIFEST_PATH, NIGHTLY_TAG


@pytest.fixture(scope="module")
def tests_by_model() -> dict[str, list[dict]]:
    """Each model's data tests in the manifest, by the model's name."""
    nodes = json.loads(MANIFEST_PATH.read_text())["nodes"]
    models = {unique_id: node["name"] for unique_id, node in nodes.items() if node["resource_type"] == "model"}
    found: dict[str, list[dict]] = {}
    for node in nodes.values():
        if node["resource_type"] == "test" and node.get("attached_node") in models:
            found.setdefault(models[node["attached_node"]], []).append(node)
    return found


def _per_batch(tests: list[dict]) -> list[str]:
    return sorted(test["name"] for test in tests if NIGHTLY_TAG not in test["tags"])


def test_no_test_of_a_staging_model_runs_after_each_micro_batch(tests_by_model):
    staging = {name: tests for name, tests in tests_by_model.items() if name.startswith("stg_")}
    assert len(staging) == 6, sorted(staging)  # every staging model has tests, each tagged nightly
    assert {name: _per_batch(tests) for name, tests in staging.items() if _per_batch(tests)} == {}


def test_each_mart_tests_its_rebuilt_rows_after_each_micro_batch(tests_by_model):
    marts = {name: tests for name, tests in tests_by_model.items() if name.startswith("candles_")}
    assert len(marts) == 6, sorted(marts)
    for name, tests in marts.items():
        per_batch = _per_batch(tests)
        assert len(per_batch) == 3, (name, per_batch)
        assert all(test.endswith("_rebuilt") for test in per_batch), (name, per_batch)
