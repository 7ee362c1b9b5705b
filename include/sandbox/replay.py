"""Read data.binance.vision spot trade dumps: csv or zip, millisecond or microsecond timestamps.

Layout, no header: id, price, qty, quoteQty, time, isBuyerMaker, isBestMatch. Files dated 2025-01-01
and later carry microseconds, older ones milliseconds; the magnitude of the time tells them apart.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import defaultdict
from pathlib import Path

from include.decimals import to_units
from include.sandbox.store import Trade
from include.timeutil import us_from_ms_or_us

_FILE_SYMBOL = re.compile(r"^([A-Z0-9]+)-trades-")


class ReplayFileError(ValueError):
    """A dump file that cannot be replayed, with the file and line named."""


def symbol_of(path: Path) -> str:
    match = _FILE_SYMBOL.match(path.name)
    if match is None:
        raise ReplayFileError(f"{path}: name does not look like SYMBOL-trades-YYYY-MM-DD.(csv|zip)")
    return match.group(1)


def _lines(path: Path) -> io.TextIOBase:
    if path.suffix == ".zip":
        archive = zipfile.ZipFile(path)
        members = [name for name in archive.namelist() if name.endswith(".csv")]
        if len(members) != 1:
            raise ReplayFileError(f"{path}: expected exactly one .csv inside, found {members}")
        return io.TextIOWrapper(archive.open(members[0]), encoding="ascii")
    return path.open(encoding="ascii", newline="")


def read_trades(path: Path) -> list[Trade]:
    trades = []
    with _lines(path) as lines:
        for number, row in enumerate(csv.reader(lines), start=1):
            if not row:
                continue
            try:
                trade_id, price, qty, quote, time, buyer_maker = row[:6]
                trades.append(
                    Trade(
                        int(trade_id),
                        us_from_ms_or_us(int(time)),
                        to_units(price),
                        to_units(qty),
                        to_units(quote),
                        buyer_maker.strip().lower() == "true",
                    )
                )
            except ValueError as error:
                raise ReplayFileError(f"{path}:{number}: {error}") from error
    return trades


def load_replay(paths: list[Path]) -> dict[str, list[Trade]]:
    """Trades per symbol from every file, ordered by id with duplicates across files removed."""
    by_symbol: dict[str, dict[int, Trade]] = defaultdict(dict)
    for path in paths:
        symbol = symbol_of(path)
        for trade in read_trades(path):
            by_symbol[symbol][trade.trade_id] = trade
    return {symbol: [trades[i] for i in sorted(trades)] for symbol, trades in by_symbol.items()}
