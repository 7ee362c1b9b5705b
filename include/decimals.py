"""Exact decimals as scaled integers.

Binance sends prices and quantities as decimal strings with at most 8 decimals. The product keeps
them as integers of 1e-8 units (``"60759.60000000"`` is ``6075960000000``), so no value ever passes
through a float, sums are exact, and the Parquet/warehouse type is a plain decimal(38, 8).
"""

from __future__ import annotations

import re

SCALE = 8
UNIT = 10**SCALE

_DECIMAL = re.compile(r"(\d+)(?:\.(\d+))?", re.ASCII)


class ScaleError(ValueError):
    """A decimal string that is malformed or does not fit the 8-decimal scale."""


def to_units(text: str, scale: int = SCALE) -> int:
    """Parse a non-negative decimal string into integer units of 10**-scale, refusing to round."""
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise ScaleError(f"not a decimal number: {text!r}")
    whole, frac = match.group(1), match.group(2) or ""
    significant = frac.rstrip("0")
    if len(significant) > scale:
        raise ScaleError(f"{text!r} has more than {scale} decimals")
    return int(whole) * 10**scale + int(significant.ljust(scale, "0") or "0")


def format_units(units: int, scale: int = SCALE) -> str:
    """Format integer units as Binance does: always ``scale`` decimals (``"0.00100000"``)."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**scale)
    return f"{sign}{whole}.{frac:0{scale}d}"


def format_plain(units: int, scale: int = SCALE) -> str:
    """Format units with trailing zeros dropped (``"0.001"``), as in exchangeInfo filters."""
    text = format_units(units, scale).rstrip("0")
    return text[:-1] if text.endswith(".") else text
