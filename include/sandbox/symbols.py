"""Symbol specifications for the sandbox: assets, tick size, step size and a starting price.

Known symbols carry Binance's real filters. Any other well-formed symbol gets sensible defaults, so
the sandbox can serve whatever a test or a demo asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

from include.binance.protocol import SYMBOL_PATTERN
from include.decimals import SCALE, to_units

_QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY")


@dataclass(frozen=True)
class SymbolSpec:
    symbol: str
    base_asset: str
    quote_asset: str
    tick_units: int
    step_units: int
    start_price_units: int
    typical_qty_units: int

    def __post_init__(self) -> None:
        # quoteQty = price x qty must stay exact at 8 decimals, as it does on Binance.
        if _decimals(self.tick_units) + _decimals(self.step_units) > SCALE:
            raise ValueError(f"{self.symbol}: tick x step needs more than {SCALE} decimals")


def _decimals(units: int) -> int:
    digits = 0
    while units % 10**SCALE and digits < SCALE:
        units *= 10
        digits += 1
    return digits


def _spec(symbol: str, base: str, quote: str, tick: str, step: str, price: str, qty: str) -> SymbolSpec:
    return SymbolSpec(symbol, base, quote, to_units(tick), to_units(step), to_units(price), to_units(qty))


KNOWN_SYMBOLS: dict[str, SymbolSpec] = {
    spec.symbol: spec
    for spec in (
        _spec("BTCUSDT", "BTC", "USDT", "0.01", "0.00001", "60000.00", "0.005"),
        _spec("ETHUSDT", "ETH", "USDT", "0.01", "0.0001", "3000.00", "0.05"),
        _spec("BNBUSDT", "BNB", "USDT", "0.01", "0.001", "600.00", "0.5"),
        _spec("SOLUSDT", "SOL", "USDT", "0.01", "0.001", "150.00", "2"),
        _spec("XRPUSDT", "XRP", "USDT", "0.0001", "0.1", "0.6000", "500"),
        _spec("XRPETH", "XRP", "ETH", "0.00000001", "1", "0.00020000", "300"),
    )
}


def spec_for(symbol: str) -> SymbolSpec:
    """The spec of a symbol: Binance's filters for known ones, defaults for any other."""
    if not SYMBOL_PATTERN.match(symbol):
        raise ValueError(f"invalid symbol {symbol!r}: expected 2-20 upper-case letters or digits")
    if symbol in KNOWN_SYMBOLS:
        return KNOWN_SYMBOLS[symbol]
    quote = next((q for q in _QUOTE_ASSETS if symbol.endswith(q) and len(symbol) > len(q)), "USDT")
    base = symbol[: -len(quote)] if symbol.endswith(quote) else symbol
    return _spec(symbol, base, quote, "0.01", "0.001", "100.00", "1")
