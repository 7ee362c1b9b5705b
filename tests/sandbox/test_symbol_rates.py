"""Per-symbol trade rates (``--symbol-rate``): a few busy symbols and many quiet ones, as on Binance.

The exchange is built on a fixed clock, so its history is the same in every run: a symbol with a
rate of its own trades at that rate, and every other symbol's market is the one ``--rate`` makes.
"""

from __future__ import annotations

from include.sandbox.config import SandboxConfig
from include.sandbox.exchange import Exchange

NOW_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
HISTORY_SECONDS = 600.0


def history(symbol_rates: dict[str, float]) -> Exchange:
    config = SandboxConfig(
        symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"),
        rate=20.0,
        symbol_rates=symbol_rates,
        history_seconds=HISTORY_SECONDS,
    )
    return Exchange(config, clock_us=lambda: NOW_US)


def test_a_symbol_with_its_own_rate_trades_at_it_and_the_others_at_the_common_rate():
    exchange = history({"ETHUSDT": 0.5, "SOLUSDT": 100.0})
    counts = {symbol: len(source.store) for symbol, source in exchange.sources.items()}
    # Segments of 10 s hold between half and one and a half times their share, so ten minutes are
    # within a segment's worth of the average.
    assert 20.0 * HISTORY_SECONDS * 0.95 < counts["BTCUSDT"] < 20.0 * HISTORY_SECONDS * 1.05, counts
    assert 0.5 * HISTORY_SECONDS * 0.9 < counts["ETHUSDT"] < 0.5 * HISTORY_SECONDS * 1.1, counts
    assert 100.0 * HISTORY_SECONDS * 0.95 < counts["SOLUSDT"] < 100.0 * HISTORY_SECONDS * 1.05, counts


def test_a_symbol_without_its_own_rate_keeps_the_market_of_the_common_rate():
    common, mixed = history({}), history({"ETHUSDT": 0.5})
    plain, beside = common.sources["BTCUSDT"].store, mixed.sources["BTCUSDT"].store
    assert len(plain) > 0
    assert (plain.ids, plain.times, plain.prices, plain.qtys) == (beside.ids, beside.times, beside.prices, beside.qtys)
    assert len(mixed.sources["ETHUSDT"].store) < len(common.sources["ETHUSDT"].store) / 10
