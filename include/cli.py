"""cryptoflow's command line: ``python -m include.cli <command> --help``.

Every command is a thin shell over functions in ``include/``; Airflow runs the same functions.
A bad argument exits with status 2 and a message that names the value.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

from include.binance.protocol import (
    CONNECTION_LIFETIME_SECONDS,
    PING_INTERVAL_SECONDS,
    PONG_TIMEOUT_SECONDS,
    SYMBOL_PATTERN,
    WEIGHT_LIMIT_PER_MINUTE,
)
from include.dashboard_server import DEFAULT_HOST as DEFAULT_DASHBOARD_HOST
from include.dashboard_server import DEFAULT_PORT as DEFAULT_DASHBOARD_PORT
from include.sandbox.faults import FaultSettings
from include.sandbox.replay import ReplayFileError, symbol_of
from include.timeutil import MICROS_PER_SECOND, now_us, to_us

if TYPE_CHECKING:  # imported when a command runs, so that --help stays quick
    from include.binance.client import BinanceClient
    from include.config import Settings
    from include.lake.store import ObjectStore


class CommandError(Exception):
    """A failure the user can act on: ``main`` prints it as one line and exits with ``status``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@contextlib.contextmanager
def _exchange_errors(rest_url: str) -> Iterator[None]:
    """The exchange's refusals and silences as one-line errors naming it, never a traceback."""
    from include.binance.client import BinanceError, BinanceUnavailable, UnlistedSymbols

    try:
        yield
    except UnlistedSymbols as error:  # a bad --symbols/SYMBOLS value, found out by asking the exchange
        raise CommandError(str(error), 2) from None
    except BinanceUnavailable as error:
        raise CommandError(f"{rest_url} did not answer: {error.msg}", 1) from None
    except BinanceError as error:
        raise CommandError(f"{rest_url} refused: {error}", 1) from None


def _number(
    kind: Callable[[str], float], low: float, high: float | None, inclusive_low: bool
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        too_low = value < low if inclusive_low else value <= low
        if too_low or (high is not None and value > high):
            bound = f"{'at least' if inclusive_low else 'more than'} {low}"
            if high is not None:
                bound += f" and at most {high}"
            raise argparse.ArgumentTypeError(f"{text!r} is out of range: must be {bound}")
        return value

    return parse


positive = _number(float, 0, None, inclusive_low=False)
# The synthetic market makes at most one trade per microsecond on average; far below, for a laptop.
trade_rate = _number(float, 0, 100_000, inclusive_low=False)
non_negative = _number(float, 0, None, inclusive_low=True)
fraction = _number(float, 0, 1, inclusive_low=True)
port_number = _number(int, 0, 65535, inclusive_low=True)
listen_port = _number(int, 1, 65535, inclusive_low=True)  # a port a user can open in a browser: not 0
positive_int = _number(int, 0, None, inclusive_low=False)
# Up to a week: every trade is made up front and kept in memory, so more would only exhaust it.
HISTORY_LIMIT_SECONDS = 7 * 24 * 3600
history_seconds = _number(float, 0, HISTORY_LIMIT_SECONDS, inclusive_low=True)


def symbol_list(text: str) -> tuple[str, ...]:
    symbols = tuple(part.strip() for part in text.split(","))
    bad = [symbol for symbol in symbols if not SYMBOL_PATTERN.match(symbol)]
    if not text.strip() or bad:
        raise argparse.ArgumentTypeError(
            f"invalid symbol {(bad or [text])[0]!r} in {text!r}: use upper-case symbols like BTCUSDT,ETHUSDT"
        )
    return tuple(dict.fromkeys(symbols))


def host_name(text: str) -> str:
    """A host name or address to listen on; an empty one would mean every address of the machine."""
    if not text or text != text.strip() or any(character.isspace() for character in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a host name or address")
    return text


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"replay file {text!r} does not exist")
    if not path.name.endswith((".csv", ".zip")):
        raise argparse.ArgumentTypeError(f"replay file {text!r} is not a .csv or .zip trade dump")
    try:
        symbol_of(path)  # the symbol is read from the name
    except ReplayFileError:
        raise argparse.ArgumentTypeError(
            f"replay file {text!r} is not named like a Binance dump: SYMBOL-trades-YYYY-MM-DD.(csv|zip)"
        ) from None
    return path


def hole_list(text: str) -> tuple[str, int]:
    symbol, _, trade_id = text.partition(":")
    if not SYMBOL_PATTERN.match(symbol) or not trade_id.isdigit():
        raise argparse.ArgumentTypeError(f"invalid hole {text!r}: use SYMBOL:TRADE_ID, e.g. BTCUSDT:1234")
    return symbol, int(trade_id)


def symbol_rate(text: str) -> tuple[str, float]:
    """``--symbol-rate SYMBOL:RATE``: one symbol's own average trades per second."""
    symbol, _, rate = text.partition(":")
    if not SYMBOL_PATTERN.match(symbol) or not rate:
        raise argparse.ArgumentTypeError(f"invalid symbol rate {text!r}: use SYMBOL:RATE, e.g. BTCUSDT:20")
    try:
        return symbol, trade_rate(rate)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"invalid symbol rate {text!r}: {error}") from None


def history_since_time(text: str) -> int:
    """``--history-since``: an ISO time with a zone or Unix epoch seconds, in µs; within the week
    ``--history`` may reach back, and not in the future."""
    try:
        seconds = Decimal(text)
    except InvalidOperation:
        seconds = None
    if seconds is not None and seconds.is_finite():
        moment_us = int(seconds * MICROS_PER_SECOND)
    else:
        try:
            moment_us = to_us(utc_time(text))
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not an ISO time like 2026-01-01T00:00:00Z or Unix epoch seconds"
            ) from None
    now = now_us()
    if moment_us > now:
        raise argparse.ArgumentTypeError(f"{text!r} is in the future")
    if moment_us < now - HISTORY_LIMIT_SECONDS * MICROS_PER_SECOND:
        raise argparse.ArgumentTypeError(f"{text!r} is more than a week ago (like --history, at most a week)")
    return moment_us


def _add_sandbox(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sandbox",
        help="run the sandbox exchange (Binance spot protocol on one port)",
        description="Serve Binance spot REST and WebSocket market streams from a synthetic market or a replay.",
    )
    parser.add_argument(
        "--host",
        type=host_name,
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    parser.add_argument("--port", type=port_number, default=9100, help="port for HTTP and WebSocket (default 9100)")
    parser.add_argument("--symbols", type=symbol_list, default=("BTCUSDT", "ETHUSDT"), help="synthetic symbols")
    parser.add_argument("--rate", type=trade_rate, default=20.0, help="average trades per second per symbol")
    parser.add_argument(
        "--symbol-rate",
        type=symbol_rate,
        action="append",
        default=[],
        metavar="SYMBOL:RATE",
        help="one symbol's own average trades per second instead of --rate; repeatable",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the synthetic market (default 42)")
    parser.add_argument(
        "--history", type=history_seconds, default=0.0, metavar="SECONDS", help="synthetic history made up front"
    )
    parser.add_argument(
        "--history-since",
        type=history_since_time,
        default=None,
        metavar="TIME",
        help="synthetic history from TIME on (ISO time with a zone, or Unix epoch seconds) when earlier than "
        "--history's; `up` gives the time of its first start",
    )
    parser.add_argument(
        "--hole",
        type=hole_list,
        action="append",
        default=[],
        metavar="SYMBOL:ID",
        help="a trade id that never exists (an exchange-side hole); repeatable",
    )
    parser.add_argument("--replay", type=existing_file, nargs="+", default=[], metavar="FILE", help="trade dumps")
    parser.add_argument("--replay-mode", choices=("historical", "live"), default="historical")
    parser.add_argument("--speed", type=positive, default=1.0, help="live replay speed factor (default 1)")
    parser.add_argument(
        "--replay-delay", type=non_negative, default=0.0, metavar="SECONDS", help="start a live replay this much later"
    )
    parser.add_argument(
        "--lifetime", type=positive, default=CONNECTION_LIFETIME_SECONDS, metavar="SECONDS", help="WS lifetime"
    )
    parser.add_argument("--ping-interval", type=positive, default=PING_INTERVAL_SECONDS, metavar="SECONDS")
    parser.add_argument("--pong-timeout", type=positive, default=PONG_TIMEOUT_SECONDS, metavar="SECONDS")
    parser.add_argument(
        "--weight-limit", type=positive_int, default=WEIGHT_LIMIT_PER_MINUTE, help="REST weight per minute per IP"
    )
    faults = parser.add_argument_group("faults (also settable at runtime: POST /admin)")
    faults.add_argument("--drop-connections-every", type=non_negative, default=0.0, metavar="SECONDS")
    faults.add_argument("--skip-fraction", type=fraction, default=0.0, metavar="F")
    faults.add_argument("--malformed-fraction", type=fraction, default=0.0, metavar="F")
    faults.add_argument("--stall-every", type=non_negative, default=0.0, metavar="SECONDS")
    faults.add_argument("--stall-seconds", type=positive, default=5.0, metavar="SECONDS")
    faults.add_argument("--rest-error-rate", type=fraction, default=0.0, metavar="F")
    parser.set_defaults(run=_run_sandbox)


def _run_sandbox(args: argparse.Namespace) -> int:
    from include.sandbox.config import SandboxConfig
    from include.sandbox.server import SandboxStartError, run

    holes: dict[str, set[int]] = {}
    for symbol, trade_id in args.hole:
        holes.setdefault(symbol, set()).add(trade_id)
    unserved = [symbol for symbol, _ in args.symbol_rate if symbol not in args.symbols]
    if unserved:  # a rate for a market the sandbox does not make would be ignored, silently
        print(
            f"python -m include.cli sandbox: error: argument --symbol-rate: {unserved[0]!r} is not one of --symbols",
            file=sys.stderr,
        )
        return 2
    try:
        run(
            SandboxConfig(
                host=args.host,
                port=int(args.port),
                symbols=args.symbols,
                rate=args.rate,
                symbol_rates=dict(args.symbol_rate),
                seed=args.seed,
                history_seconds=args.history,
                history_since_us=args.history_since,
                holes={symbol: frozenset(ids) for symbol, ids in holes.items()},
                replay=tuple(args.replay),
                replay_mode=args.replay_mode,
                speed=args.speed,
                replay_delay_seconds=args.replay_delay,
                lifetime_seconds=args.lifetime,
                ping_interval=args.ping_interval,
                pong_timeout=args.pong_timeout,
                weight_limit=int(args.weight_limit),
                faults=FaultSettings(
                    drop_connections_every=args.drop_connections_every,
                    skip_fraction=args.skip_fraction,
                    malformed_fraction=args.malformed_fraction,
                    stall_every=args.stall_every,
                    stall_seconds=args.stall_seconds,
                    rest_error_rate=args.rest_error_rate,
                ),
            )
        )
    except ReplayFileError as error:  # a dump that cannot be read is a bad argument too
        print(f"python -m include.cli sandbox: error: argument --replay: {error}", file=sys.stderr)
        return 2
    except SandboxStartError as error:
        print(f"python -m include.cli sandbox: error: {error}", file=sys.stderr)
        return 2
    return 0


def _add_up(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "up",
        help="run the whole pipeline on the embedded defaults until Ctrl-C",
        description="Start every service of the product (settings from the environment), print the URLs once "
        "Airflow has parsed every DAG file, and stop them all cleanly on Ctrl-C. The dbt manifest the warehouse "
        "DAG renders from is built first when it is missing or stale. A DAG file that fails to import stops "
        "everything, naming the file and its error.",
    )
    parser.add_argument(
        "--sandbox-port", type=port_number, default=None, help="sandbox port (default: $SANDBOX_PORT, else 9100)"
    )
    parser.add_argument("--sandbox-rate", type=trade_rate, default=20.0, help="sandbox trades/s per symbol")
    parser.add_argument("--airflow-port", type=port_number, default=8080, help="Airflow UI/API port (default 8080)")
    parser.add_argument(
        "--dashboard-port", type=listen_port, default=DEFAULT_DASHBOARD_PORT, help="dashboard port (default 8501)"
    )
    parser.add_argument(
        "--airflow-home", type=Path, default=None, help="Airflow's database, logs and config (default airflow_home/)"
    )
    parser.set_defaults(run=_run_up)


def _run_up(args: argparse.Namespace) -> int:
    from include.up import run

    port = None if args.sandbox_port is None else int(args.sandbox_port)
    return run(port, args.sandbox_rate, int(args.airflow_port), args.airflow_home, int(args.dashboard_port))


def _add_stream(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "stream",
        help="stream live trades into the lake (the worker Airflow runs, without Airflow)",
        description="Stream trades from BINANCE_WS_URL into LAKE_URL as Parquet micro-batches until "
        "Ctrl-C/SIGTERM or --duration.",
    )
    parser.add_argument("--symbols", type=symbol_list, default=None, help="default: $SYMBOLS")
    parser.add_argument("--duration", type=positive, default=None, metavar="SECONDS", help="stop after this long")
    parser.add_argument("--flush-seconds", type=positive, default=5.0, help="flush every N seconds (default 5)")
    parser.add_argument("--flush-trades", type=positive_int, default=50_000, help="or every M trades (default 50000)")
    parser.add_argument("--silence-seconds", type=positive, default=30.0, help="reconnect after this much silence")
    _add_attempts(parser)
    parser.set_defaults(run=_run_stream)


def _add_attempts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--attempts", type=positive_int, default=8, help="tries per REST request on 5xx or network errors (default 8)"
    )


def _run_stream(args: argparse.Namespace) -> int:
    from include.binance.client import BinanceClient, require_listed
    from include.config import load_settings
    from include.ingest.run import run_worker
    from include.ingest.worker import ConnectionFailed
    from include.lake.spool import SpoolBusy

    settings = load_settings()
    symbols = args.symbols or settings.symbols
    # A symbol the exchange does not trade would stream nothing, silently: refuse it up front.
    with _exchange_errors(settings.rest_url), BinanceClient(settings.rest_url, max_attempts=args.attempts) as client:
        require_listed(client, symbols, trading=True)
    try:
        stats = run_worker(
            settings,
            symbols=symbols,
            duration=args.duration,
            flush_seconds=args.flush_seconds,
            flush_trades=int(args.flush_trades),
            silence_seconds=args.silence_seconds,
        )
    except (ConnectionFailed, SpoolBusy) as error:  # the stream gave up, or its spool is another's
        raise CommandError(str(error), 1) from None
    print(json.dumps(stats))
    return 0


def utc_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO time like 2019-10-11T00:00:00Z") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add Z for UTC")
    return moment.astimezone(UTC)


def _add_backfill(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "backfill",
        help="find and fill missing trades of a time range from REST history",
        description="Check every hour window of [--start, --end) against BINANCE_REST_URL by trade id and "
        "fill what the lake (LAKE_URL) is missing; a range never streamed is imported whole.",
    )
    parser.add_argument("--symbol", type=symbol_list, required=True, help="one symbol or a comma list")
    parser.add_argument("--start", type=utc_time, required=True, help="ISO time, e.g. 2019-10-11T00:00:00Z")
    parser.add_argument("--end", type=utc_time, default=None, help="ISO time (exclusive); default: now")
    _add_attempts(parser)
    parser.set_defaults(run=_run_backfill)


def _run_backfill(args: argparse.Namespace) -> int:
    import logging

    from include.binance.client import BinanceClient, require_listed
    from include.config import load_settings
    from include.lake.store import open_lake

    end = args.end or datetime.now(UTC)
    if end <= args.start:
        named = "--end" if args.end else "--end (now)"
        raise CommandError(f"{named} {end.isoformat()} is not after --start {args.start.isoformat()}", 2)
    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is too much
    with _exchange_errors(settings.rest_url), BinanceClient(settings.rest_url, max_attempts=args.attempts) as client:
        # History outlives trading: a halted or delisted pair is still listed, and still has its trades.
        require_listed(client, args.symbol, trading=False)
        totals = _backfill_range(client, open_lake(settings.lake_url), args.symbol, args.start, end)
        totals["requests"] = client.stats.requests
        totals["rate_limited"] = client.stats.rate_limited
    print(json.dumps(totals))
    return 1 if totals["incomplete"] else 0


def _backfill_range(
    client: BinanceClient, lake: ObjectStore, symbols: Sequence[str], start: datetime, end: datetime
) -> dict[str, int]:
    """Check and fill every hour window of the range, per symbol; the totals."""
    from include.repair.repair import RepairIncomplete, hour_windows, repair_window

    totals = {"windows": 0, "expected": 0, "filled": 0, "holes": 0, "incomplete": 0}
    for symbol in symbols:
        for window_start, window_end in hour_windows(start, end):
            try:
                report = repair_window(client, lake, symbol, window_start, window_end)
            except RepairIncomplete as error:
                print(f"incomplete: {error}", file=sys.stderr)
                totals["incomplete"] += 1
                continue
            totals["windows"] += 1
            totals["expected"] += report.expected
            totals["filled"] += report.filled
            totals["holes"] += len(report.holes)
    return totals


def _add_fill_gaps(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "fill-gaps",
        help="fill the gaps the stream recorded, from REST history (the fill_gaps DAG without Airflow)",
        description="Fetch the trade ids of every gap the stream recorded in LAKE_URL (status/gaps/) that no "
        "fill has completed from BINANCE_REST_URL's historicalTrades, write them as backfill files and record "
        "each fill (status/gap_fills/). One pass, or a pass every --follow seconds until Ctrl-C. Prints a JSON "
        "summary per pass (with --follow, per pass that found gaps); one pass exits 1 while gaps stay incomplete.",
    )
    parser.add_argument("--symbols", type=symbol_list, default=None, help="only these (default: every symbol)")
    parser.add_argument(
        "--follow", type=positive, default=None, metavar="SECONDS", help="keep filling, a pass every SECONDS"
    )
    _add_attempts(parser)
    parser.set_defaults(run=_run_fill_gaps)


def _run_fill_gaps(args: argparse.Namespace) -> int:
    import logging
    import os
    import socket

    from include.binance.client import BinanceClient
    from include.config import load_settings
    from include.ingest.writer import writer_id
    from include.lake.store import open_lake
    from include.repair.live import fill_pending

    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is too much
    lake = open_lake(settings.lake_url)
    writer = writer_id("fill", socket.gethostname(), os.getpid())  # this process's own write marker
    stopping = _stop_after_the_pass() if args.follow is not None else None
    with _exchange_errors(settings.rest_url), BinanceClient(settings.rest_url, max_attempts=args.attempts) as client:
        while True:
            summary = fill_pending(client, lake, writer, args.symbols)
            if stopping is None:
                print(json.dumps(summary.as_dict()))
                return 1 if summary.incomplete else 0
            if summary.gaps:
                print(json.dumps(summary.as_dict()), flush=True)
            if stopping.wait(args.follow):
                return 0


def _stop_after_the_pass() -> threading.Event:
    """Ctrl-C while following: the pass under way finishes, records its fills and prints its summary,
    then the command exits 0. A second Ctrl-C interrupts at once."""
    stopping = threading.Event()

    def first_interrupt(signum: int, frame: object) -> None:
        stopping.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, first_interrupt)
    return stopping


def _add_load(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "load",
        help="load new lake files into the warehouse, exactly once",
        description="Load every trade file of LAKE_URL that the warehouse does not hold yet into raw.trades "
        "(WAREHOUSE=duckdb: the file DUCKDB_PATH; WAREHOUSE=snowflake: COPY INTO through the Airflow "
        "connection SNOWFLAKE_CONN_ID). Only the partitions named by write markers since the last load are "
        "listed; --full lists the whole lake.",
    )
    parser.add_argument("--full", action="store_true", help="reconcile: list the whole lake, not only new writes")
    parser.set_defaults(run=_run_load)


def _run_load(args: argparse.Namespace) -> int:
    from contextlib import closing

    import duckdb

    from include.config import load_settings
    from include.lake.store import open_lake
    from include.warehouse.load import load_lake, open_warehouse

    settings = load_settings()
    try:
        warehouse = open_warehouse(settings)
    except duckdb.Error as error:  # e.g. a DUCKDB_PATH that is a folder: duckdb's errors are not OSErrors
        raise CommandError(f"DUCKDB_PATH={str(settings.duckdb_path)!r}: {error}", 2) from None
    with closing(warehouse):
        result = load_lake(open_lake(settings.lake_url), warehouse, full=args.full)
    print(json.dumps(result.as_dict()))
    return 1 if result.refused else 0


def _add_warehouse_setup(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "warehouse-setup",
        help="apply the versioned Snowflake setup SQL",
        description="Apply the Snowflake setup versions not applied yet (include/warehouse/snowflake_setup), "
        "through the Airflow connection SNOWFLAKE_CONN_ID. The stage points at LAKE_URL.",
    )
    parser.add_argument(
        "--objects-only",
        action="store_true",
        help="skip the versions that create roles, the compute warehouse and grants (they need ACCOUNTADMIN)",
    )
    parser.set_defaults(run=_run_warehouse_setup)


def _run_warehouse_setup(args: argparse.Namespace) -> int:
    from include.config import load_settings
    from include.warehouse.snowflake_backend import SnowflakeWarehouse

    settings = load_settings()
    if settings.warehouse != "snowflake":
        print(
            f"error: WAREHOUSE={settings.warehouse!r}: the setup is for snowflake (duckdb needs none)", file=sys.stderr
        )
        return 2
    with SnowflakeWarehouse(settings.snowflake_conn_id) as warehouse:
        applied = warehouse.setup(
            settings.lake_url, settings.snowflake_storage_integration, account_level=not args.objects_only
        )
    print(json.dumps({"applied": applied}))
    return 0


def _add_transform(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "transform",
        help="build the dbt models and run their tests (dbt build) on the configured warehouse",
        description="Run dbt build of include/dbt on WAREHOUSE (duckdb: the file DUCKDB_PATH): stg_trades, "
        "then the candle marts, each followed by its tests.",
    )
    parser.add_argument("--full-refresh", action="store_true", help="rebuild the incremental models from scratch")
    parser.add_argument("--select", nargs="+", default=(), metavar="SELECTOR", help="dbt node selection")
    parser.add_argument(
        "--per-batch",
        action="store_true",
        help="what the warehouse DAG builds after each micro-batch: without the tests tagged nightly, "
        "which read every trade or every row of a mart",
    )
    parser.set_defaults(run=_run_transform)


def _dbt_settings() -> Settings:
    """The settings dbt runs on; a DuckDB path that is a folder is a bad setting."""
    from include.config import load_settings

    settings = load_settings()
    if settings.warehouse == "duckdb" and settings.duckdb_path.is_dir():
        raise CommandError(f"DUCKDB_PATH={str(settings.duckdb_path)!r} is a folder, not a DuckDB file", 2)
    return settings


def _run_transform(args: argparse.Namespace) -> int:
    from include.transform import PER_BATCH_EXCLUDE, TransformFailed, transform

    settings = _dbt_settings()
    exclude = PER_BATCH_EXCLUDE if args.per_batch else ()
    try:
        result = transform(settings, full_refresh=args.full_refresh, select=args.select, exclude=exclude)
    except TransformFailed as error:
        raise CommandError(str(error), 1) from None
    # The dashboard reads only its published snapshot: what was just built is shown once published.
    print(json.dumps({**result.as_dict(), "snapshot": _publish(settings)}))
    return 0


def _add_publish(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "publish",
        help="publish the dashboard's read-only snapshot of the marts now",
        description="Copy the marts, stream status, completeness and audit of the DuckDB warehouse "
        "(DUCKDB_PATH) into the dashboard's snapshot (DASHBOARD_SNAPSHOT) and replace it atomically; "
        "transform and the warehouse DAG do this after each build. Prints the path and each table's rows "
        "as JSON. On Snowflake there is nothing to publish: the reason is printed and the exit is 0.",
    )
    parser.set_defaults(run=_run_publish)


def _run_publish(args: argparse.Namespace) -> int:
    settings = _dbt_settings()
    if settings.warehouse == "duckdb":
        _require_warehouse(settings)
    print(json.dumps(_publish(settings)))
    return 0


def _publish(settings: Settings) -> dict[str, object]:
    """Publish the dashboard's snapshot; what was published, as printed (the reason when nothing was)."""
    import duckdb

    from include.warehouse.snapshot import publish_snapshot

    try:
        info = publish_snapshot(settings)
    except duckdb.Error as error:  # e.g. a load holding the warehouse's write lock
        raise CommandError(f"publishing the dashboard snapshot of {str(settings.duckdb_path)!r}: {error}", 1) from None
    if info.path is None:
        return {"path": None, "reason": info.reason}
    published_at = info.published_at.isoformat() if info.published_at else None
    return {"path": str(info.path), "rows": info.rows, "published_at": published_at}


def _require_warehouse(settings: Settings) -> None:
    """A DuckDB warehouse that was never made is a failure to name, not one to make empty."""
    if not settings.duckdb_path.exists():
        raise CommandError(f"DUCKDB_PATH={str(settings.duckdb_path)!r} does not exist: nothing was loaded yet", 1)


def _add_dashboard(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "dashboard",
        help="serve the dashboard (Streamlit) until Ctrl-C",
        description="Serve dashboard/app.py with Streamlit, headless, on --host:--port, and print its URL. "
        "It reads the published snapshot (DASHBOARD_SNAPSHOT) on DuckDB, the marts on Snowflake.",
    )
    parser.add_argument(
        "--host", type=host_name, default=DEFAULT_DASHBOARD_HOST, help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=listen_port, default=DEFAULT_DASHBOARD_PORT, help="port (default 8501)")
    parser.set_defaults(run=_run_dashboard)


def _run_dashboard(args: argparse.Namespace) -> int:
    from include.config import load_settings
    from include.dashboard_server import ServeError, serve

    load_settings()  # a bad setting is named here, not in the page
    try:
        return serve(args.host, int(args.port))
    except ServeError as error:
        raise CommandError(str(error), 2) from None


def _add_freshness(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "freshness",
        help="check how recently raw.trades was loaded (dbt source freshness) on the configured warehouse",
        description="Run dbt source freshness of include/dbt on WAREHOUSE (duckdb: the file DUCKDB_PATH): "
        "raw.trades warns 1 h after its newest loaded_at and is an error after 6 h. Prints each checked "
        "source's status and newest loaded_at as JSON; exits 1 on an error, naming the stale source.",
    )
    parser.set_defaults(run=_run_freshness)


def _run_freshness(args: argparse.Namespace) -> int:
    from include.transform import TransformFailed, source_freshness

    settings = _dbt_settings()
    if settings.warehouse == "duckdb":  # dbt would create an empty one
        _require_warehouse(settings)
    try:
        sources = source_freshness(settings)
    except TransformFailed as error:
        raise CommandError(str(error), 1) from None
    print(json.dumps({name: source.as_dict() for name, source in sources.items()}))
    return 0


def _add_audit(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "audit",
        help="audit the candle marts against the exchange's klines, field by field",
        description="Compare marts.candles_<interval> (1m 5m 15m 1h 4h 1d) of WAREHOUSE with BINANCE_REST_URL's "
        "/api/v3/klines for the closed, complete buckets of [--start, --end) not audited yet, and record each "
        "in marts.candle_audit. Prints a JSON summary; exits 1 on any mismatch, naming the first on stderr.",
    )
    parser.add_argument("--symbol", type=symbol_list, required=True, help="symbols, comma separated")
    parser.add_argument("--start", type=utc_time, required=True, help="ISO time, e.g. 2026-11-24T00:00:00Z")
    parser.add_argument("--end", type=utc_time, default=None, help="ISO time (default: now)")
    parser.set_defaults(run=_run_audit)


def _run_audit(args: argparse.Namespace) -> int:
    from contextlib import closing

    import duckdb
    from snowflake.connector.errors import DatabaseError

    from include.binance.client import BinanceClient
    from include.config import load_settings
    from include.timeutil import now_us, to_us
    from include.warehouse.audit import CandleAuditor
    from include.warehouse.load import open_warehouse

    settings = load_settings()
    end_us = now_us() if args.end is None else to_us(args.end)
    if to_us(args.start) >= end_us:
        raise CommandError(f"--start {args.start.isoformat()} is not before --end", 2)
    with (
        _exchange_errors(settings.rest_url),
        BinanceClient(settings.rest_url) as client,
        closing(open_warehouse(settings)) as warehouse,
    ):
        auditor = CandleAuditor(warehouse.execute, warehouse.dialect, client)
        try:
            result = auditor.audit(args.symbol, to_us(args.start), end_us, now_us=client.server_time_us())
        except (duckdb.Error, DatabaseError) as error:  # e.g. no marts yet: run the transform first
            raise CommandError(f"the warehouse refused the audit: {error}", 1) from None
    print(json.dumps(result.as_dict()))
    if result.failed:
        raise CommandError(f"candles differ from the exchange: {result.first_differences()}", 1)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from include.alerts.cli import add_alerts_commands

    parser = argparse.ArgumentParser(prog="python -m include.cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    _add_sandbox(commands)
    _add_up(commands)
    _add_stream(commands)
    _add_backfill(commands)
    _add_fill_gaps(commands)
    _add_load(commands)
    _add_warehouse_setup(commands)
    _add_transform(commands)
    _add_publish(commands)
    _add_dashboard(commands)
    _add_freshness(commands)
    _add_audit(commands)
    add_alerts_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from include.config import ConfigError

    try:
        with contextlib.suppress(KeyboardInterrupt):
            return args.run(args) or 0
    except ConfigError as error:  # a bad environment variable: named, like a bad argument
        _print_error(str(error))
        return 2
    except CommandError as error:
        _print_error(str(error))
        return error.status
    except OSError as error:  # a path from the settings that cannot be used (DATA_DIR, LAKE_URL, ...)
        where = f": {error.filename!r}" if error.filename else ""
        _print_error(f"{error.strerror or error}{where}")
        return 1
    return 0


def _print_error(message: str) -> None:
    """One line on stderr, whatever the message holds (an exchange's error body may span lines)."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
