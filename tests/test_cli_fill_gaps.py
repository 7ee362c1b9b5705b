"""``python -m include.cli fill-gaps``: the live fill without Airflow, as a real process.

Gaps are recorded as the stream records them (its ``Gap`` records and gap marker) over a sandbox's
real history; the command fills them from the sandbox's REST and says what it did as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from include.binance.client import BinanceClient
from include.ingest.gaps import Gap
from include.lake.keys import GAP_WRITES_PREFIX
from include.lake.markers import MarkerWriter
from include.lake.store import LocalStore
from include.lake.trades import read_trades
from include.timeutil import now_us
from tests.support.exchange import rest_history
from tests.support.gaps import fill_records
from tests.support.net import MICRO, free_port
from tests.support.paths import REPO_ROOT
from tests.support.processes import run_to_end
from tests.support.rest_proxy import RestProxy
from tests.test_cli import assert_one_line_error, run_cli

SYMBOL = "BTCUSDT"


def record_gap(lake: LocalStore, rows: list[dict[str, Any]], writer: str = "stream-cli-test") -> Gap:
    """A jump over ``rows`` (the exchange's REST rows), recorded as the stream records it."""
    gap = Gap(SYMBOL, rows[0]["id"], rows[-1]["id"], "jump", rows[-1]["time"] + 1, now_us())
    lake.put(gap.key(writer), gap.to_json(writer))
    MarkerWriter(lake, writer, GAP_WRITES_PREFIX).mark([gap.key(writer)])
    return gap


def recent_rows(rest_url: str, count: int) -> list[dict[str, Any]]:
    with BinanceClient(rest_url) as client:
        first = client.first_trade_id_at_or_after(SYMBOL, now_us() - 20_000_000)
    assert first is not None
    return rest_history(rest_url, SYMBOL, first[0], MICRO, to_id=first[0] + count)


@pytest.mark.parametrize(
    ("args", "flag", "value"),
    [
        (["--follow", "0"], "--follow", "0"),
        (["--follow", "-2"], "--follow", "-2"),
        (["--follow", "soon"], "--follow", "soon"),
        (["--follow", "nan"], "--follow", "nan"),
        (["--symbols", "btcusdt"], "--symbols", "btcusdt"),
        (["--attempts", "0"], "--attempts", "0"),
    ],
    ids=["follow-0", "follow-negative", "follow-text", "follow-nan", "symbols-lower", "attempts-0"],
)
def test_a_bad_argument_exits_2_naming_it_and_writes_nothing(tmp_path, args, flag, value):
    result = run_cli("fill-gaps", *args, env={"DATA_DIR": str(tmp_path)})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"argument {flag}: " in result.stderr, result.stderr
    assert repr(value) in result.stderr.split(f"argument {flag}: ", 1)[1]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_one_pass_fills_a_recorded_gap_then_finds_nothing_to_do(start_sandbox, tmp_path):
    lake = LocalStore(tmp_path / "lake")
    with start_sandbox(symbols=(SYMBOL,), rate=20.0, history_seconds=60) as sandbox:
        rows = recent_rows(sandbox.rest_url, 120)
        record_gap(lake, rows)
        env = {"BINANCE_REST_URL": sandbox.rest_url, "DATA_DIR": str(tmp_path)}
        first = run_cli("fill-gaps", env=env)
        second = run_cli("fill-gaps", "--symbols", SYMBOL, env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert (summary["gaps"], summary["filled"], summary["missing"], summary["incomplete"]) == (1, 120, 0, 0)
    assert sorted(read_trades(lake, SYMBOL)["trade_id"].to_pylist()) == [row["id"] for row in rows]
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout.strip().splitlines()[-1])["gaps"] == 0


def test_a_gap_rest_cannot_finish_yet_exits_1_and_says_what_is_missing(start_sandbox, tmp_path):
    lake = LocalStore(tmp_path / "lake")
    with start_sandbox(symbols=(SYMBOL,), rate=20.0, history_seconds=60) as sandbox:
        rows = recent_rows(sandbox.rest_url, 100)
        record_gap(lake, rows)
        cap = rows[60]["id"]

        def lagging(endpoint: str, query: dict[str, str], body: Any) -> Any:
            return [row for row in body if row["id"] < cap] if endpoint == "historicalTrades" else body

        with RestProxy(sandbox.rest_url, lagging) as proxy:
            result = run_cli("fill-gaps", env={"BINANCE_REST_URL": proxy.url, "DATA_DIR": str(tmp_path)})
    assert result.returncode == 1, (result.stdout, result.stderr)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["filled"], summary["missing"], summary["incomplete"]) == (60, 40, 1)
    ((record),) = fill_records(lake)
    assert record["missing"] == 40


def test_an_exchange_that_does_not_answer_is_one_line_naming_it(tmp_path):
    lake = LocalStore(tmp_path / "lake")
    record_gap(lake, [{"id": 10, "time": now_us()}, {"id": 12, "time": now_us()}])
    unreachable = f"http://127.0.0.1:{free_port()}"
    result = run_cli("fill-gaps", "--attempts", "2", env={"BINANCE_REST_URL": unreachable, "DATA_DIR": str(tmp_path)})
    assert_one_line_error(result, 1, f"{unreachable} did not answer")
    assert fill_records(lake) == []


def test_follow_keeps_filling_new_gaps_until_ctrl_c(start_sandbox, tmp_path):
    import os
    import signal

    from tests.support.processes import process_group
    from tests.support.waiting import wait_until

    lake = LocalStore(tmp_path / "lake")
    with start_sandbox(symbols=(SYMBOL,), rate=20.0, history_seconds=60) as sandbox:
        rows = recent_rows(sandbox.rest_url, 200)
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("LAKE_URL", "SYMBOLS", "EXCHANGE", "SANDBOX_PORT")},
            "BINANCE_REST_URL": sandbox.rest_url,
            "DATA_DIR": str(tmp_path),
        }
        argv = [sys.executable, "-m", "include.cli", "fill-gaps", "--follow", "0.2"]
        log = (tmp_path / "fill.log").open("w")
        with process_group(argv, env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, text=True) as cli:
            for part in (rows[:80], rows[100:200]):  # a gap recorded while the command runs is filled too
                record_gap(lake, part)
                wanted = {row["id"] for row in part}
                wait_until(
                    lambda wanted=wanted: wanted <= set(read_trades(lake, SYMBOL)["trade_id"].to_pylist()),
                    120,
                    "the follower filling the new gap",
                )
            assert cli.poll() is None
            cli.send_signal(signal.SIGINT)
            assert cli.wait(60) == 0
            out = cli.stdout.read()
        log.close()
        assert "Traceback" not in (tmp_path / "fill.log").read_text()
    summaries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert sum(s["filled"] for s in summaries) == 180
    assert [r["missing"] for r in fill_records(lake)] == [0, 0]


def test_the_command_is_listed_with_its_flags():
    result = run_to_end([sys.executable, "-m", "include.cli", "fill-gaps", "--help"], None, 60, cwd=REPO_ROOT)
    assert result.returncode == 0
    for flag in ("--follow", "--symbols", "--attempts"):
        assert flag in result.stdout


def test_ctrl_c_while_following_finishes_the_pass_under_way_and_says_what_it_filled(start_sandbox, tmp_path):
    import os
    import signal
    import threading

    from tests.support.processes import process_group

    lake = LocalStore(tmp_path / "lake")
    asked, release = threading.Event(), threading.Event()

    def held(endpoint: str, query: dict[str, str], body: Any) -> Any:
        if endpoint == "historicalTrades":  # the pass is under way: hold it until the test has pressed Ctrl-C
            asked.set()
            release.wait(60)
        return body

    with start_sandbox(symbols=(SYMBOL,), rate=20.0, history_seconds=60) as sandbox:
        rows = recent_rows(sandbox.rest_url, 50)
        record_gap(lake, rows)
        with RestProxy(sandbox.rest_url, held) as proxy:
            env = {
                **{k: v for k, v in os.environ.items() if k not in ("LAKE_URL", "SYMBOLS", "EXCHANGE", "SANDBOX_PORT")},
                "BINANCE_REST_URL": proxy.url,
                "DATA_DIR": str(tmp_path),
            }
            argv = [sys.executable, "-m", "include.cli", "fill-gaps", "--follow", "5"]
            with process_group(
                argv, env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ) as cli:
                assert asked.wait(60), "the follower never asked for the gap's trades"
                cli.send_signal(signal.SIGINT)
                release.set()
                assert cli.wait(60) == 0
                out, err = cli.communicate()
    assert "Traceback" not in err
    summaries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(s["gaps"], s["filled"], s["missing"]) for s in summaries] == [(1, 50, 0)]
    assert [record["missing"] for record in fill_records(lake)] == [0]
