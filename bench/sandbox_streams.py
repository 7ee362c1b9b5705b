"""Sandbox streams: the sandbox's own trade stream, alone and with every other stream beside it.

The sandbox (``python -m include.cli sandbox``, on its own core) replays generated dumps of two
symbols live (``--replay-mode live --speed``), and a client process on the other core
(``bench/sandbox_streams_client.py``) reads ``<s>@trade`` for both over a raw WebSocket for a fixed
window (from a warm-up after the first trade: what the sandbox does once, such as a book's first
full update of 10,000 levels, is not its rate), counting the trades and checking their ids: from
each dump's first id on, each once, none missing. Then the same with a second connection beside it,
subscribed to every other stream of the same symbols: klines of every interval, ``@ticker``,
``@miniTicker``, ``!ticker@arr``, ``!miniTicker@arr``, ``@bookTicker``, ``@depth20@100ms`` and
``@depth@100ms``, each message counted.
Each phase runs a fresh sandbox whose replay starts once the client is connected (the dumps are
written once per rate and replayed by every phase).

Why a live replay. The sandbox must be the bottleneck, so it must be offered trades at about the
rate it can stream. The synthetic market (``--rate``) makes a symbol's trades ten seconds at a time,
in Python: at such rates a segment is hundreds of thousands of trades made at once while every
stream waits, which would measure the model, not the streams. A replay's trades are read before the
sandbox serves, so what it spends per trade is the stream's own work: store, encode, frame, write.
The dumps' prices walk a cent on one trade in a hundred (``STEP_SHARE``): the book's work grows with
how far the price moves between ticks, not with the trades, and a price that moved on every trade
would move a thousand times faster than a real one at these rates.

Why this rate. Offered more than it can stream, the sandbox does not level off at its limit, it
collapses: each tick hands every trade that is due to the hub at once (store, encode, queue) and the
writes get what CPU is left, so the more it is behind the less it sends (offered 229,000 trades/s,
well above its limit, it delivered 12,000), until its queue reaches the limit at which it drops
the connection, as Binance drops a slow reader. So short probes offer a rate it keeps up with
easily (``PROBE_RATE``) and read the sandbox's CPU per trade; both phases are then offered ``LOAD``
of the rate the dearest probe's cost allows on a whole core (one 3 s probe read a trade as cheap as
138,000 a CPU-second where others read 100,000-110,000, and the run offered past the limit
collapsed in every round): the sandbox is busy, with the room a real limit needs
(it falls behind before its core is quite full), and what the other streams cost shows in its CPU
(and as trades not delivered, if they push it past). Its limit in each
phase is its trades per CPU-second, the rate a whole core would carry at what a trade cost (CPU time
is the sandbox's own: processes sharing its core do not lower it), and the target is on their ratio
(of the rounds' medians, below): with the other streams at least 0.9 of alone ("keeps its
throughput").

Why rounds. On this VM one window's CPU figures vary by about a fifth from run to run (two earlier
single-window runs gave 0.898 and 1.23), so one window alone against one beside cannot decide a
tenth. The phases run in ``rounds``: each round one window alone and one beside, the first of the
two alternating from round to round, so a drift of the machine over the run weighs on both alike.
Each phase's figure is the median of its rounds, and the target is on the ratio of the two medians;
the per-round ratios' spread (lowest to highest) is printed beside it so the noise shows.

Figures: the offered rate; medians over the rounds of the trades/s delivered in each phase, of the
sandbox's limit in each, their ratio, and the spread of the per-round ratios; the other streams'
messages/s, the sandbox's CPU in each phase. Checks, in every round: alone, the sandbox delivered
what it was offered (``KEPT_UP``: else the probe read it too cheap and it collapsed, and the figures
mean nothing; a full run on 2026-12-08 was offered 102,000 trades/s after a probe that read 29% busy
at 40,000, and delivered 6,000 to 21,000); every trade id received exactly once in both phases;
every other stream delivered messages. ``--smoke``: no probe, one
round at a low rate, a few seconds each, targets not enforced.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.common import CLIENT_CORE, DUMP_START_US, REPO_ROOT, free_port, pinned, start_sandbox
from bench.report import Report, Target
from include.sandbox.klines import INTERVALS

SYMBOLS = ("BTCUSDT", "ETHUSDT")
FIRST_IDS = {"BTCUSDT": 7_000_000_001, "ETHUSDT": 3_000_000_001}  # not 1: nothing may assume where ids start
STEP_SHARE = 0.01  # the share of trades that move the price by a cent (see the docstring)
DUMP_RATE = 10_000  # trades/s per symbol at speed 1: the dumps' trades are 100 µs apart
PROBE_RATE = 40_000  # trades/s over both symbols: well below what the sandbox can stream
LOAD = 0.6  # both phases are offered this share of the sandbox's limit as the probes measure it
SMOKE_RATE = 20_000  # trades/s offered in a smoke run, which has no probe
REPLAY_DELAY_SECONDS = 3.0  # the client connects within this long after the sandbox answers
KEPT_UP = 0.95  # alone, delivered / offered at least this: else the rate was past the sandbox's limit
TARGET_RATIO = 0.9  # the issue: the sandbox "keeps its trade-stream throughput" with the other streams
CLIENT_SLACK_SECONDS = 180.0


@dataclass(frozen=True)
class Size:
    seconds: float  # each phase's window
    warm_up: float  # from the first trade to the window: what the sandbox does once is not its rate
    probe_seconds: float  # 0: no probe, both phases are offered SMOKE_RATE
    probes: int  # probe windows: the dearest one's cost per trade sets the offered rate
    rounds: int  # windows of each phase, alone and beside in turns


# Seven rounds of 4 s windows (a kline updates every 2 s): a full run takes about four minutes, most
# of it each phase's fresh sandbox loading its dumps (some 10 µs a trade) and its replay's delay.
FULL = Size(seconds=4.0, warm_up=1.5, probe_seconds=3.0, probes=3, rounds=7)
SMOKE = Size(seconds=3.0, warm_up=0.5, probe_seconds=0.0, probes=0, rounds=1)  # 3 s: a kline updates every 2 s


def other_streams() -> list[str]:
    """Every stream of the two symbols but their trades, and the two all-market arrays."""
    per_symbol = [
        *(f"kline_{interval}" for interval in INTERVALS),
        "ticker",
        "miniTicker",
        "bookTicker",
        "depth20@100ms",
        "depth@100ms",
    ]
    return [f"{symbol.lower()}@{kind}" for symbol in SYMBOLS for kind in per_symbol] + [
        "!ticker@arr",
        "!miniTicker@arr",
    ]


@dataclass
class Phase:
    """One window: what the client received and what the sandbox spent meanwhile."""

    offered: float  # trades/s the replay offered, over both symbols
    client: dict[str, Any]
    sandbox_cpu_seconds: float
    wall_seconds: float  # the sandbox's CPU was read over this long (the client's window, from outside)

    @property
    def rate(self) -> float:
        return self.client["trades"] / self.client["seconds"]

    @property
    def sandbox_busy(self) -> float:
        """The share of its core the sandbox used during the window."""
        return self.sandbox_cpu_seconds / self.wall_seconds

    @property
    def per_cpu_second(self) -> float:
        return self.rate / self.sandbox_busy

    def every_trade_once(self) -> tuple[bool, str]:
        """From each dump's first id on, each id once and none missing: the ids ran on by one."""
        received = self.client["symbols"]
        ok = all(
            received[symbol]["first"] == FIRST_IDS[symbol] and received[symbol]["contiguous"] for symbol in SYMBOLS
        )
        counts = ", ".join(
            f"{symbol} {received[symbol]['count']:,} from {received[symbol]['first']}" for symbol in SYMBOLS
        )
        return ok, counts


def write_walk_dump(path: Path, count: int, first_id: int, seed: int) -> None:
    """A data.binance.vision-style dump: ids from ``first_id``, one trade per 100 µs from 2026-01-01,
    the price a random walk from 60,000.00 that moves a cent on one trade in ``1 / STEP_SHARE``."""
    rng = np.random.default_rng(seed)
    steps = rng.choice((-1, 0, 1), size=count, p=(STEP_SHARE / 2, 1 - STEP_SHARE, STEP_SHARE / 2))
    cents = 6_000_000 + np.cumsum(steps)
    with path.open("w") as out:
        for first in range(0, count, 100_000):
            rows = []
            for n in range(first, min(first + 100_000, count)):
                price, qty = int(cents[n]), 1 + n % 977  # cents and 1e-5 units
                quote = price * qty  # 1e-7 units: exact
                rows.append(
                    f"{first_id + n},{price // 100}.{price % 100:02d}000000,0.{qty:05d}000,"
                    f"{quote // 10**7}.{quote % 10**7:07d}0,{DUMP_START_US + (n + 1) * 100},"
                    f"{'True' if n % 3 else 'False'},True\n"
                )
            out.write("".join(rows))


def write_dumps(work: Path, per_symbol: int) -> list[Path]:
    """One dump per symbol (a day whose dumps carry microseconds), ``per_symbol`` trades each."""
    day = time.strftime("%Y-%m-%d", time.gmtime(DUMP_START_US // 1_000_000))
    paths = []
    for seed, symbol in enumerate(SYMBOLS):
        path = work / f"{symbol}-trades-{day}.csv"
        write_walk_dump(path, per_symbol, FIRST_IDS[symbol], seed)
        paths.append(path)
    return paths


def dump_size(offered: float, size: Size, seconds: float) -> int:
    """Trades per symbol a replay at ``offered`` needs to outlast a window of ``seconds`` and its warm-up.

    The replay runs by the clock from its first trade, which the client reads at once: the warm-up and
    the window, with a margin. No more: each phase's sandbox loads the dumps afresh, at some 10 µs a trade.
    """
    return math.ceil(offered / len(SYMBOLS) * ((size.warm_up + seconds) * 1.1 + 1))


@contextmanager
def replay_dumps(work: Path, per_symbol: int) -> Iterator[list[Path]]:
    """The dumps every phase at one rate replays (each phase's sandbox reads them afresh)."""
    dumps = write_dumps(work, per_symbol)
    try:
        yield dumps
    finally:
        for dump in dumps:
            dump.unlink()


def run_phase(dumps: list[Path], offered: float, window: tuple[float, float], others: list[str]) -> Phase:
    """A fresh sandbox replaying ``dumps`` at ``offered`` trades/s, read for ``window``'s seconds from
    its warm-up after the first trade."""
    per_symbol = offered / len(SYMBOLS)
    port = free_port()
    arguments = ["--symbols", ",".join(SYMBOLS), "--replay", *map(str, dumps), "--replay-mode", "live"]
    arguments += ["--speed", f"{per_symbol / DUMP_RATE:.6f}", "--replay-delay", str(REPLAY_DELAY_SECONDS)]
    sandbox = start_sandbox(port, arguments)
    try:
        return _read_window(sandbox, port, offered, window, others)
    finally:
        sandbox.terminate()
        sandbox.wait(30)


@dataclass
class Round:
    """One window of each phase, run one after the other."""

    alone: Phase
    beside: Phase

    @property
    def ratio(self) -> float:
        return self.beside.per_cpu_second / self.alone.per_cpu_second


def run_rounds(dumps: list[Path], offered: float, size: Size) -> list[Round]:
    """``size.rounds`` rounds, the first phase of each alternating (alone first in the first round)."""
    window = (size.seconds, size.warm_up)
    rounds = []
    for number in range(size.rounds):
        phases: dict[bool, Phase] = {}
        order = (False, True) if number % 2 == 0 else (True, False)
        for beside in order:
            phases[beside] = run_phase(dumps, offered, window, other_streams() if beside else [])
        rounds.append(Round(alone=phases[False], beside=phases[True]))
        done = rounds[-1]
        print(
            f"round {number + 1} of {size.rounds}: per CPU-second alone {done.alone.per_cpu_second:,.0f}, "
            f"with the other streams {done.beside.per_cpu_second:,.0f}, ratio {done.ratio:.3f}",
            flush=True,
        )
    return rounds


def _read_window(
    sandbox: subprocess.Popen[bytes], port: int, offered: float, window: tuple[float, float], others: list[str]
) -> Phase:
    seconds, warm_up = window
    command = [
        sys.executable,
        "-m",
        "bench.sandbox_streams_client",
        "--port",
        str(port),
        "--symbols",
        ",".join(SYMBOLS),
    ]
    command += ["--seconds", str(seconds), "--warm-up", str(warm_up), "--others", ",".join(others)]
    client = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, preexec_fn=pinned(CLIENT_CORE))
    assert client.stdout is not None
    server = psutil.Process(sandbox.pid)
    try:
        opened = client.stdout.readline()  # "open": the first trade arrived
        began, cpu = time.perf_counter(), _cpu_seconds(server)
        result = client.stdout.readline()
        ended, spent = time.perf_counter(), _cpu_seconds(server) - cpu
        returncode = client.wait(CLIENT_SLACK_SECONDS)
    finally:
        if client.poll() is None:
            client.kill()
    if returncode or opened.strip() != "open":
        raise RuntimeError(f"the sandbox streams client failed ({returncode}); its error is above")
    return Phase(offered, json.loads(result), spent, ended - began)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def offered_rate(probes: Sequence[Phase]) -> float:
    """``LOAD`` of what the dearest probe's CPU per trade allows on a whole core, rounded to 1,000."""
    return round(LOAD * min(probe.per_cpu_second for probe in probes), -3)


def median_of(phases: Sequence[Phase], figure: Callable[[Phase], float]) -> float:
    return statistics.median(figure(phase) for phase in phases)


def report_phases(report: Report, offered: float, probed: bool, rounds: list[Round]) -> None:
    alone, beside = [r.alone for r in rounds], [r.beside for r in rounds]
    busy = "sandbox {:.0%} busy"
    of_rounds = f"median of {len(rounds)} round{'s' * (len(rounds) > 1)}"
    chosen = f"{LOAD:g} of the probe's limit" if probed else "a smoke run's rate (no probe)"
    report.figure("offered", offered, "trades/s", note=f"{chosen}, both symbols")
    delivered = median_of(alone, lambda p: p.rate), median_of(beside, lambda p: p.rate)
    alone_busy, beside_busy = median_of(alone, lambda p: p.sandbox_busy), median_of(beside, lambda p: p.sandbox_busy)
    report.figure("trades alone", delivered[0], "trades/s", note=f"{of_rounds}, {busy.format(alone_busy)}")
    report.figure(
        "trades with the other streams", delivered[1], "trades/s", note=f"{of_rounds}, {busy.format(beside_busy)}"
    )
    report.figure("delivered, with / alone", delivered[1] / delivered[0], digits=2, note="1: it kept up in both")
    per_cpu = f"trades per CPU-second of the sandbox, {of_rounds}: the rate a whole core would carry"
    limits = median_of(alone, lambda p: p.per_cpu_second), median_of(beside, lambda p: p.per_cpu_second)
    report.figure("sandbox limit, alone", limits[0], "trades/s", note=per_cpu)
    report.figure("sandbox limit, with the other streams", limits[1], "trades/s", note=per_cpu)
    target = Target(">=", TARGET_RATIO)
    report.figure("sandbox limit, with / alone", limits[1] / limits[0], digits=2, target=target, note="of the medians")
    ratios = [r.ratio for r in rounds]
    spread = f"the rounds' own ratios ran from {min(ratios):.2f} to {max(ratios):.2f}"
    report.figure("sandbox limit, per-round ratio spread", max(ratios) - min(ratios), digits=2, note=spread)
    rates = [sum(phase.client["others"].values()) / phase.client["seconds"] for phase in beside]
    streams = f"{len(other_streams())} streams, {of_rounds}"
    report.figure("other streams", statistics.median(rates), "messages/s", digits=1, note=streams)
    report.figure("sandbox CPU, trades alone", 100 * alone_busy, "%", note=f"of its core, {of_rounds}")
    report.figure("sandbox CPU, with the other streams", 100 * beside_busy, "%", note=f"of its core, {of_rounds}")


def report_kept_up(report: Report, offered: float, rounds: list[Round]) -> None:
    """Alone, the sandbox must deliver what it is offered: if it did not, the offered rate was past its
    limit (a probe that read it too cheap), it collapsed, and its trades per CPU-second mean nothing."""
    behind = [f"round {n}: {r.alone.rate:,.0f}" for n, r in enumerate(rounds, 1) if r.alone.rate < KEPT_UP * offered]
    detail = "; ".join(behind) if behind else f"each of {len(rounds)} round(s) at least {KEPT_UP:g} of {offered:,.0f}"
    report.check("kept up with the offered rate, alone", not behind, detail)


def report_checks(report: Report, rounds: list[Round]) -> None:
    for name, phases in (("alone", [r.alone for r in rounds]), ("with the other streams", [r.beside for r in rounds])):
        results = [phase.every_trade_once() for phase in phases]
        failed = [f"round {n}: {detail}" for n, (ok, detail) in enumerate(results, 1) if not ok]
        detail = "; ".join(failed) if failed else f"{len(rounds)} round(s), the last: {results[-1][1]}"
        report.check(f"every trade once, {name}", not failed, detail)
    silent = {
        n: [name for name in other_streams() if not r.beside.client["others"].get(name)]
        for n, r in enumerate(rounds, 1)
    }
    quiet = "; ".join(f"round {n} silent: {', '.join(names)}" for n, names in silent.items() if names)
    delivered = f"{len(other_streams())} streams in each of {len(rounds)} round(s)"
    report.check("every other stream delivered", not quiet, quiet or delivered)


def main(smoke: bool = False) -> bool:
    size = SMOKE if smoke else FULL
    report = Report(
        f"sandbox: its trade stream alone and with every other stream ({len(SYMBOLS)} symbols replayed, "
        f"{size.rounds} round{'s' * (size.rounds > 1)} of {size.seconds:g} s windows)"
    )
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        offered = float(SMOKE_RATE)
        if size.probe_seconds:
            with replay_dumps(work, dump_size(PROBE_RATE, size, size.probe_seconds)) as dumps:
                probes = [
                    run_phase(dumps, PROBE_RATE, (size.probe_seconds, size.warm_up), []) for _ in range(size.probes)
                ]
            offered = offered_rate(probes)
            for probe in probes:
                print(f"probe at {probe.rate:,.0f} trades/s: sandbox {probe.sandbox_busy:.0%} busy", flush=True)
        with replay_dumps(work, dump_size(offered, size, size.seconds)) as dumps:
            rounds = run_rounds(dumps, offered, size)
    report_phases(report, offered, bool(size.probe_seconds), rounds)
    report_kept_up(report, offered, rounds)
    report_checks(report, rounds)
    return report.passed(enforce_targets=not smoke)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a couple of seconds each, targets not enforced")
    sys.exit(0 if main(parser.parse_args().smoke) else 1)
