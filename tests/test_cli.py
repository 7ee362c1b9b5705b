"""The command line, ``python -m include.cli``: help, argument checking, and a real sandbox process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import include.sandbox.server
from include.cli import build_parser, main
from include.sandbox.config import SandboxConfig
from include.timeutil import MICROS_PER_SECOND, now_us, to_us
from tests.support.net import free_port, http_get
from tests.support.paths import BTCUSDT_DUMP, REPO_ROOT
from tests.support.processes import process_group, run_to_end
from tests.support.rest_proxy import TextServer
from tests.support.waiting import wait_until

# Variables a developer may have exported that would point a command elsewhere.
OUTSIDE_SETTINGS = (
    "EXCHANGE",
    "SANDBOX_PORT",
    "BINANCE_REST_URL",
    "BINANCE_WS_URL",
    "LAKE_URL",
    "DUCKDB_PATH",
    "SYMBOLS",
)

SANDBOX_FLAGS = (
    "--host",
    "--port",
    "--symbols",
    "--rate",
    "--symbol-rate",
    "--seed",
    "--history",
    "--history-since",
    "--hole",
    "--replay",
    "--replay-mode",
    "--speed",
    "--lifetime",
    "--ping-interval",
    "--pong-timeout",
    "--weight-limit",
    "--drop-connections-every",
    "--skip-fraction",
    "--malformed-fraction",
    "--stall-every",
    "--stall-seconds",
    "--rest-error-rate",
)


@pytest.fixture
def started(monkeypatch) -> list[SandboxConfig]:
    """Stand in for the server: record the config ``sandbox`` would serve instead of serving it."""
    configs: list[SandboxConfig] = []
    monkeypatch.setattr(include.sandbox.server, "run", configs.append)
    return configs


def run_main(argv: list[str]) -> int:
    """``main``'s exit status, whether it returns it or exits with it."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1


def command_names() -> list[str]:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if a.dest == "command")
    return sorted(commands.choices)


# Help ---------------------------------------------------------------------------------------------


def test_top_level_help_lists_every_command(capsys):
    assert run_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: python -m include.cli" in out
    assert "sandbox" in out
    for name in command_names():
        assert name in out


@pytest.mark.parametrize("command", command_names())
def test_every_command_has_help_that_mentions_its_flags(capsys, started, command):
    assert run_main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: python -m include.cli {command}" in out
    subparser = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    flags = [flag for action in subparser._actions for flag in action.option_strings if flag.startswith("--")]
    assert flags
    for flag in flags:
        assert flag in out, f"{command} --help does not mention {flag}"
    assert not started  # help never starts anything


def test_sandbox_help_mentions_every_sandbox_flag(capsys):
    assert run_main(["sandbox", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in SANDBOX_FLAGS:
        assert flag in out


# Arguments ----------------------------------------------------------------------------------------

# (arguments after `sandbox`, the flag the error must name, the bad value it must quote)
BAD_ARGUMENTS = [
    (["--host", ""], "--host", ""),
    (["--host", "0.0.0.0 "], "--host", "0.0.0.0 "),
    (["--port", "70000"], "--port", "70000"),
    (["--port", "abc"], "--port", "abc"),
    (["--rate", "0"], "--rate", "0"),
    (["--rate", "-5"], "--rate", "-5"),
    (["--rate", "abc"], "--rate", "abc"),
    (["--rate", "nan"], "--rate", "nan"),
    (["--rate", "1000000"], "--rate", "1000000"),
    (["--rate", "inf"], "--rate", "inf"),
    (["--symbols", "btcusdt"], "--symbols", "btcusdt"),
    (["--symbols", ""], "--symbols", ""),
    (["--symbols", "BTCUSDT,"], "--symbols", "BTCUSDT,"),
    (["--seed", "x"], "--seed", "x"),
    (["--history", "-1"], "--history", "-1"),
    (["--history", "604801"], "--history", "604801"),
    (["--history-since", "yesterday"], "--history-since", "yesterday"),
    (["--history-since", "2026-01-01T00:00:00"], "--history-since", "2026-01-01T00:00:00"),  # no zone
    (["--history-since", "nan"], "--history-since", "nan"),
    (["--history-since", "0"], "--history-since", "0"),  # 1970: more than a week ago
    (["--history-since", "-5"], "--history-since", "-5"),
    (["--history-since", "{eight days ago}"], "--history-since", "{eight days ago}"),
    (["--history-since", "{tomorrow}"], "--history-since", "{tomorrow}"),
    (["--symbol-rate", "BTCUSDT"], "--symbol-rate", "BTCUSDT"),
    (["--symbol-rate", "BTCUSDT:"], "--symbol-rate", "BTCUSDT:"),
    (["--symbol-rate", "btcusdt:5"], "--symbol-rate", "btcusdt:5"),
    (["--symbol-rate", "BTCUSDT:0"], "--symbol-rate", "BTCUSDT:0"),
    (["--symbol-rate", "BTCUSDT:abc"], "--symbol-rate", "BTCUSDT:abc"),
    (["--symbol-rate", "BTCUSDT:1000000"], "--symbol-rate", "BTCUSDT:1000000"),
    (["--hole", "BTCUSDT"], "--hole", "BTCUSDT"),
    (["--hole", "BTCUSDT:abc"], "--hole", "BTCUSDT:abc"),
    (["--replay", "/nonexistent.csv"], "--replay", "/nonexistent.csv"),
    (["--replay", "{txt}"], "--replay", "{txt}"),
    (["--replay", "{unnamed}"], "--replay", "{unnamed}"),
    (["--replay-mode", "foo"], "--replay-mode", "foo"),
    (["--speed", "0"], "--speed", "0"),
    (["--speed", "nan"], "--speed", "nan"),
    (["--replay-delay", "-1"], "--replay-delay", "-1"),
    (["--lifetime", "0"], "--lifetime", "0"),
    (["--ping-interval", "-1"], "--ping-interval", "-1"),
    (["--pong-timeout", "0"], "--pong-timeout", "0"),
    (["--weight-limit", "0"], "--weight-limit", "0"),
    (["--weight-limit", "1.5"], "--weight-limit", "1.5"),
    (["--drop-connections-every", "-1"], "--drop-connections-every", "-1"),
    (["--skip-fraction", "1.5"], "--skip-fraction", "1.5"),
    (["--malformed-fraction", "-0.1"], "--malformed-fraction", "-0.1"),
    (["--stall-every", "x"], "--stall-every", "x"),
    (["--stall-seconds", "0"], "--stall-seconds", "0"),
    (["--rest-error-rate", "2"], "--rest-error-rate", "2"),
]


@pytest.mark.parametrize(("args", "flag", "value"), BAD_ARGUMENTS, ids=[" ".join(c[0]) for c in BAD_ARGUMENTS])
def test_a_bad_sandbox_argument_exits_2_naming_the_value(capsys, started, tmp_path, args, flag, value):
    files = {
        "{txt}": tmp_path / "BTCUSDT-trades-2021-01-08.txt",
        "{unnamed}": tmp_path / "trades.csv",  # no symbol in the name to replay it under
    }
    for path in files.values():
        path.write_bytes(BTCUSDT_DUMP.read_bytes())
    now = datetime.now(UTC)
    times = {
        "{eight days ago}": (now - timedelta(days=8)).isoformat(),
        "{tomorrow}": f"{(now + timedelta(days=1)).timestamp():.0f}",
    }
    replaced = {**{name: str(path) for name, path in files.items()}, **times}
    args = [replaced.get(a, a) for a in args]
    value = replaced.get(value, value)
    assert run_main(["sandbox", *args]) == 2
    assert not started, f"sandbox {' '.join(args)} was accepted"
    err = capsys.readouterr().err
    assert "usage: python -m include.cli sandbox" in err
    assert f"argument {flag}: " in err
    assert repr(value) in err, err


def test_good_sandbox_arguments_reach_the_config(started):
    # Three hours ago, in another zone and to the microsecond: the moment the history is served from.
    since = (datetime.now(UTC) - timedelta(hours=3)).astimezone(timezone(timedelta(hours=1)))
    code = run_main(
        [
            "sandbox",
            "--host=0.0.0.0",
            "--port=9200",
            "--symbols=ETHUSDT,BTCUSDT,ETHUSDT",
            "--rate=7.5",
            "--symbol-rate=ETHUSDT:0.25",
            "--symbol-rate=BTCUSDT:40",
            "--seed=3",
            "--history=60",
            f"--history-since={since.isoformat()}",
            "--hole=BTCUSDT:5",
            "--hole=BTCUSDT:7",
            "--hole=ETHUSDT:1",
            f"--replay={BTCUSDT_DUMP}",
            "--replay-mode=live",
            "--speed=2",
            "--lifetime=30",
            "--ping-interval=3",
            "--pong-timeout=4",
            "--weight-limit=100",
            "--drop-connections-every=9",
            "--skip-fraction=0.1",
            "--malformed-fraction=0.2",
            "--stall-every=11",
            "--stall-seconds=1.5",
            "--rest-error-rate=0.3",
        ]
    )
    assert code == 0
    (config,) = started
    assert (config.host, config.port, config.symbols) == ("0.0.0.0", 9200, ("ETHUSDT", "BTCUSDT"))
    assert (config.rate, config.seed, config.history_seconds) == (7.5, 3, 60.0)
    assert config.symbol_rates == {"ETHUSDT": 0.25, "BTCUSDT": 40.0}
    assert config.history_since_us == to_us(since)
    assert config.holes == {"BTCUSDT": frozenset({5, 7}), "ETHUSDT": frozenset({1})}
    assert (config.replay, config.replay_mode, config.speed) == ((BTCUSDT_DUMP,), "live", 2.0)
    assert (config.lifetime_seconds, config.ping_interval, config.pong_timeout) == (30.0, 3.0, 4.0)
    assert config.weight_limit == 100
    assert isinstance(config.weight_limit, int)
    faults = config.faults
    assert (faults.drop_connections_every, faults.skip_fraction, faults.malformed_fraction) == (9.0, 0.1, 0.2)
    assert (faults.stall_every, faults.stall_seconds, faults.rest_error_rate) == (11.0, 1.5, 0.3)


def test_a_rate_for_a_symbol_not_served_exits_2_naming_it(capsys, started):
    assert run_main(["sandbox", "--symbols=BTCUSDT", "--symbol-rate=ETHUSDT:2"]) == 2
    assert not started
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "argument --symbol-rate: 'ETHUSDT' is not one of --symbols" in err


def test_history_since_takes_unix_epoch_seconds_too(started):
    since_us = now_us() - 2 * 3600 * MICROS_PER_SECOND
    seconds, micros = divmod(since_us, MICROS_PER_SECOND)
    assert run_main(["sandbox", f"--history-since={seconds}.{micros:06d}"]) == 0
    (config,) = started
    assert config.history_since_us == since_us


def test_defaults_are_binance_like(started):
    assert run_main(["sandbox"]) == 0
    (config,) = started
    assert (config.history_seconds, config.history_since_us) == (0.0, None)
    assert (config.host, config.port, config.symbols) == ("127.0.0.1", 9100, ("BTCUSDT", "ETHUSDT"))
    assert (config.rate, config.symbol_rates) == (20.0, {})
    assert (config.replay, config.replay_mode) == ((), "historical")
    assert (config.ping_interval, config.pong_timeout, config.weight_limit) == (20.0, 60.0, 6000)
    assert config.lifetime_seconds == 24 * 3600


def test_a_malformed_replay_file_exits_2_naming_the_file_and_line(monkeypatch, capsys, tmp_path):
    lines = BTCUSDT_DUMP.read_text().splitlines(keepends=True)
    lines[6] = lines[6].replace(lines[6].split(",")[1], "39432.4x", 1)
    path = tmp_path / "BTCUSDT-trades-2021-01-08.csv"
    path.write_text("".join(lines))
    # Build the exchange as the server would, but never serve: a dump that loads would return 0 here.
    monkeypatch.setattr(include.sandbox.server, "run", include.sandbox.server.build_app)
    assert run_main(["sandbox", "--port", "0", "--replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:7:" in err
    assert "39432.4x" in err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["--bogus"], "<command>"),
        ([], "<command>"),
        (["sandbox", "--bogus"], "unrecognized arguments: --bogus"),
    ],
    ids=["bogus", "--bogus", "nothing", "sandbox --bogus"],
)
def test_an_unknown_command_or_flag_fails(capsys, started, argv, named):
    assert run_main(argv) == 2
    assert not started
    err = capsys.readouterr().err
    assert "error:" in err
    assert named in err


def run_cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command line in a real process, its own group, ended with everything it started.

    Settings a developer may have exported are left out, and ``DATA_DIR`` is ``env``'s or a fresh
    temporary folder, so that nothing is ever written into the repo's ``data/``.
    """
    base = {key: value for key, value in os.environ.items() if key not in OUTSIDE_SETTINGS}
    with tempfile.TemporaryDirectory(prefix="cryptoflow-cli-") as data_dir:  # removed after the command
        base["DATA_DIR"] = data_dir
        # dbt's artifacts too: include/dbt/target holds the manifest the DAG tests render from.
        base["DBT_TARGET_PATH"] = str(Path(data_dir) / "dbt-target")
        argv = [sys.executable, "-m", "include.cli", *args]
        return run_to_end(argv, {**base, **(env or {})}, timeout, cwd=REPO_ROOT)


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int, *named: str) -> None:
    """Exit ``status``, nothing on stdout, and one line on stderr that names each of ``named``."""
    assert result.returncode == status, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for value in named:
        assert value in lines[0], (value, lines[0])
    assert result.stdout == ""


def test_a_bad_argument_fails_in_a_real_process():
    result = run_cli("sandbox", "--port", "70000")
    assert result.returncode == 2
    assert "argument --port: '70000'" in result.stderr
    assert result.stdout == ""


def test_an_unknown_command_fails_in_a_real_process():
    result = run_cli("bogus")
    assert result.returncode == 2
    assert "'bogus'" in result.stderr


# A real sandbox process ---------------------------------------------------------------------------


def test_the_sandbox_command_serves_both_symbols_and_stops_cleanly_on_sigint(tmp_path):
    port = free_port()
    out, err = (tmp_path / "stdout").open("w+"), (tmp_path / "stderr").open("w+")
    argv = [sys.executable, "-m", "include.cli", "sandbox", "--port", str(port), "--symbols=BTCUSDT,ETHUSDT"]
    with process_group([*argv, "--rate=200"], cwd=REPO_ROOT, stdout=out, stderr=err) as process:
        _serve_both_symbols_and_stop_on_sigint(process, port, tmp_path)
    out.close()
    err.close()


def _serve_both_symbols_and_stop_on_sigint(process: subprocess.Popen, port: int, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        assert process.poll() is None, f"the sandbox exited: {(tmp_path / 'stderr').read_text()}"
        try:
            return http_get(f"{base}/api/v3/ping")[::2] == (200, {})
        except (urllib.error.URLError, ConnectionError):
            return False

    wait_until(answering, 60, "the sandbox answering /api/v3/ping")

    # Both symbols trade, over REST and over one combined stream.
    for symbol in ("BTCUSDT", "ETHUSDT"):
        url = f"{base}/api/v3/trades?symbol={symbol}&limit=20"
        wait_until(lambda url=url: len(http_get(url)[2]) >= 5, 60, f"five {symbol} trades")
        trades = http_get(url)[2]
        assert [t["id"] for t in trades] == sorted(t["id"] for t in trades)
    status, _, body = http_get(f"{base}/api/v3/trades?symbol=XRPUSDT")
    assert (status, body["code"]) == (400, -1121)
    with connect(f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade/ethusdt@trade", open_timeout=10) as ws:
        seen: set[str] = set()
        while seen != {"BTCUSDT", "ETHUSDT"}:
            seen.add(json.loads(ws.recv(timeout=30))["data"]["s"])

        # Ctrl-C: the client is told, and the process ends with status 0.
        process.send_signal(signal.SIGINT)
        events = []
        while not events or events[-1].get("e") != "serverShutdown":
            try:
                events.append(json.loads(ws.recv(timeout=30)))
            except (TimeoutError, ConnectionClosed):
                break
        assert events, "nothing came after SIGINT"
        assert events[-1].get("e") == "serverShutdown"
    assert process.wait(timeout=60) == 0
    assert f"127.0.0.1:{port}" in (tmp_path / "stdout").read_text()
    assert "Traceback" not in (tmp_path / "stderr").read_text()


def test_the_sandbox_refuses_a_port_in_use_naming_it(capsys):
    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        assert main(["sandbox", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_port_0_picks_a_free_port_and_prints_the_real_one():
    argv = [sys.executable, "-m", "include.cli", "sandbox", "--port", "0", "--symbols", "BTCUSDT"]
    with process_group(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True) as process:
        line = process.stdout.readline()
        match = re.search(r"REST http://127\.0\.0\.1:(\d+)/api/v3", line)
        assert match, line
        port = int(match.group(1))
        assert port != 0
        status, _, body = http_get(f"http://127.0.0.1:{port}/api/v3/ping")
        assert (status, body) == (200, {})


# Bad settings and symbols: one line naming the value, a non-zero exit, never a traceback -----------------

# Every command that reads the settings, with arguments that are otherwise good.
COMMANDS_WITH_SETTINGS = {
    "stream": ["stream", "--symbols", "BTCUSDT", "--duration", "1"],
    "backfill": ["backfill", "--symbol", "BTCUSDT", "--start", "2019-10-11T00:00:00Z"],
    "fill-gaps": ["fill-gaps"],
    "load": ["load"],
    "warehouse-setup": ["warehouse-setup"],
    "up": ["up"],
    "publish": ["publish"],
    "dashboard": ["dashboard", "--port", str(free_port())],  # were the settings not read, it would serve
}


@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_SETTINGS))
@pytest.mark.parametrize(
    ("name", "value"),
    [("SANDBOX_PORT", "abc"), ("SANDBOX_PORT", "0"), ("BINANCE_REST_URL", "http://127.0.0.1:abc")],
)
def test_a_bad_setting_stops_every_command_with_one_line_naming_it(tmp_path, command, name, value):
    result = run_cli(*COMMANDS_WITH_SETTINGS[command], env={name: value, "DATA_DIR": str(tmp_path)})
    assert_one_line_error(result, 2, f"{name}={value!r}")
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_stream_refuses_symbols_the_exchange_does_not_list_naming_them(start_sandbox, tmp_path):
    with start_sandbox(symbols=("BTCUSDT", "ETHUSDT"), rate=20.0) as sandbox:
        env = {"BINANCE_REST_URL": sandbox.rest_url, "BINANCE_WS_URL": sandbox.ws_url, "DATA_DIR": str(tmp_path)}
        result = run_cli("stream", "--symbols", "BTCUSDT,NOTACOIN,ZZZUSDT", "--duration", "5", env=env)
        from_settings = run_cli("stream", "--duration", "5", env={**env, "SYMBOLS": "ETHUSDT,NOTACOIN"})
    assert_one_line_error(result, 2, "'NOTACOIN'", "'ZZZUSDT'", sandbox.rest_url)
    assert "BTCUSDT" not in result.stderr
    assert_one_line_error(from_settings, 2, "'NOTACOIN'")
    assert list(tmp_path.iterdir()) == []  # refused before the first connection: nothing written


def test_stream_of_listed_symbols_still_streams(start_sandbox, tmp_path):
    with start_sandbox(symbols=("BTCUSDT",), rate=50.0) as sandbox:
        env = {"BINANCE_REST_URL": sandbox.rest_url, "BINANCE_WS_URL": sandbox.ws_url, "DATA_DIR": str(tmp_path)}
        result = run_cli("stream", "--symbols", "BTCUSDT", "--duration", "3", "--flush-seconds", "1", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["written"] > 0
    assert list((tmp_path / "lake" / "trades" / "exchange=binance" / "batch").rglob("*.parquet"))  # its flushes


@pytest.mark.parametrize("command", ["stream", "backfill"])
def test_an_exchange_that_does_not_answer_is_one_line_naming_it(tmp_path, command):
    unreachable = f"http://127.0.0.1:{free_port()}"
    result = run_cli(*COMMANDS_WITH_SETTINGS[command], "--attempts", "2", env={"BINANCE_REST_URL": unreachable})
    assert_one_line_error(result, 1, f"{unreachable} did not answer")


@pytest.mark.parametrize("command", ["stream", "backfill"])
def test_a_url_that_is_not_a_binance_api_is_one_line_naming_it(tmp_path, command):
    with TextServer() as web_page:
        result = run_cli(*COMMANDS_WITH_SETTINGS[command], env={"BINANCE_REST_URL": web_page.url})
    assert_one_line_error(result, 1, web_page.url, "not JSON")


@pytest.mark.parametrize("command", ["stream", "backfill", "load"])
def test_a_data_dir_that_cannot_be_a_folder_is_one_line_naming_it(start_sandbox, tmp_path, command):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    data_dir = a_file / "data"
    args = COMMANDS_WITH_SETTINGS[command]
    if command == "backfill":  # a closed window, so that the first write comes at once
        args = [*args[:3], "--start", f"{datetime.now(UTC) - timedelta(minutes=90):%Y-%m-%dT%H:00:00Z}"]
    with start_sandbox(symbols=("BTCUSDT",), rate=20.0, history_seconds=2 * 3600) as sandbox:
        env = {"BINANCE_REST_URL": sandbox.rest_url, "BINANCE_WS_URL": sandbox.ws_url, "DATA_DIR": str(data_dir)}
        result = run_cli(*args, env=env)
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    assert str(data_dir) in last


def test_a_duckdb_path_that_is_a_folder_is_one_line_naming_it(tmp_path):
    result = run_cli("load", env={"DATA_DIR": str(tmp_path / "data"), "DUCKDB_PATH": str(tmp_path)})
    assert_one_line_error(result, 2, f"DUCKDB_PATH={str(tmp_path)!r}")


def test_a_stream_that_gives_up_is_one_line_and_a_failure(start_sandbox, tmp_path, monkeypatch, capsys):
    """A worker whose connection keeps crashing (ConnectionFailed) ends the command with exit 1 and
    one line; the crash itself is injected, as no sandbox fault makes a reader raise."""
    import include.ingest.run
    from include.ingest.worker import ConnectionFailed

    def crashing_worker(*args, **kwargs):
        raise ConnectionFailed("connection btcusdt@trade crashed 5 times in 300 s: boom")

    monkeypatch.setattr(include.ingest.run, "run_worker", crashing_worker)
    with start_sandbox(symbols=("BTCUSDT",)) as sandbox:
        monkeypatch.setenv("BINANCE_REST_URL", sandbox.rest_url)
        monkeypatch.setenv("DATA_DIR", str(tmp_path))
        status = main(["stream", "--symbols", "BTCUSDT", "--duration", "1"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.strip().splitlines() == ["error: connection btcusdt@trade crashed 5 times in 300 s: boom"]


def test_transform_builds_the_candles_of_what_was_loaded(tmp_path):
    """load then transform, as a user runs them: candles appear for the loaded trades."""
    import duckdb

    from include.lake.store import LocalStore
    from tests.support.trades import fill_lake

    fill_lake(LocalStore(tmp_path / "lake"), files=2, per_file=100)
    env = {"DATA_DIR": str(tmp_path)}
    loaded = run_cli("load", "--full", env=env)
    assert loaded.returncode == 0, loaded.stderr
    built = run_cli("transform", env=env, timeout=300)
    assert built.returncode == 0, built.stderr
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as connection:
        (trades,) = connection.execute("select count(*) from staging.stg_trades").fetchone()
        (in_candles,) = connection.execute("select sum(trade_count) from marts.candles_1m").fetchone()
    assert trades == in_candles == 400


def test_transform_on_a_warehouse_path_that_is_a_folder_is_one_line_naming_it(tmp_path):
    (tmp_path / "folder.duckdb").mkdir()
    result = run_cli("transform", env={"DUCKDB_PATH": str(tmp_path / "folder.duckdb")}, timeout=300)
    assert_one_line_error(result, 2, "folder.duckdb")


def _stale_warehouse(folder: Path, hours: float) -> Path:
    """A DuckDB warehouse the loader filled from a tiny lake, its loaded_at then moved ``hours`` back."""
    import duckdb

    from include.lake.store import LocalStore
    from include.warehouse.duckdb_backend import DuckDBWarehouse
    from include.warehouse.load import load_lake
    from tests.support.trades import fill_lake

    lake, path = LocalStore(folder / "lake"), folder / "warehouse.duckdb"
    fill_lake(lake, files=1, per_file=10)
    with DuckDBWarehouse(path) as warehouse:
        load_lake(lake, warehouse, full=True)
    with duckdb.connect(str(path)) as connection:
        connection.execute(f"update raw.trades set loaded_at = loaded_at - interval {hours} hour")
    return path


def test_freshness_of_a_stale_warehouse_is_one_line_naming_raw_trades_and_a_failure(monkeypatch, capsys, tmp_path):
    """A real dbt run, in this process (dbt is imported once per session); its artifacts in tmp_path."""
    monkeypatch.setenv("DUCKDB_PATH", str(_stale_warehouse(tmp_path, 7)))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "dbt"))
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "dbt" / "logs"))
    assert main(["freshness"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: dbt source freshness failed: raw.trades is stale: last loaded at "), err


def test_freshness_prints_each_source_and_a_warning_is_no_failure(monkeypatch, capsys, tmp_path):
    """The command's own part: the statuses as JSON, exit 0 on a warning (source_freshness is the dbt run)."""
    import include.transform
    from include.transform import SourceFreshness

    loaded_at = datetime.now(UTC) - timedelta(hours=2)
    checked = {"raw.trades": SourceFreshness("warn", loaded_at, 7200.0)}
    monkeypatch.setattr(include.transform, "source_freshness", lambda settings: checked)
    monkeypatch.setenv("DUCKDB_PATH", str(_stale_warehouse(tmp_path, 2)))
    assert main(["freshness"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"raw.trades": {"status": "warn", "max_loaded_at": loaded_at.isoformat(), "age_seconds": 7200.0}}


def test_freshness_of_a_warehouse_never_made_is_one_line_and_makes_none(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "none.duckdb"))
    assert main(["freshness"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: DUCKDB_PATH={str(tmp_path / 'none.duckdb')!r} does not exist: nothing was loaded yet"
    ]
    assert list(tmp_path.iterdir()) == []
