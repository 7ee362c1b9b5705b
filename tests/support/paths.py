"""Where things are: the repo, and the real Binance samples copied into it (tests/fixtures/binance/README.md)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BINANCE_SAMPLES = REPO_ROOT / "tests" / "fixtures" / "binance"
BTCUSDT_DUMP = BINANCE_SAMPLES / "BTCUSDT-trades-2021-01-08-head2001.csv"
