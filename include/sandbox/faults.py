"""Fault injection: what a real network and a real exchange do to a client, on demand.

Every fault is a field here, set from the command line at start and changed while running through
``/admin``. What the faults did is counted, so tests can compare what the client saw with what
the exchange did (the ids it skipped, the malformed frames it sent, each with its text).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, fields


@dataclass
class FaultSettings:
    drop_connections_every: float = 0.0  # seconds; 0 is off
    skip_fraction: float = 0.0  # WS trade messages silently not sent (REST history keeps them)
    malformed_fraction: float = 0.0  # broken or invalid frames injected, per trade message
    stall_every: float = 0.0  # seconds; 0 is off
    stall_seconds: float = 5.0  # how long a stall lasts: no data, no pings
    rest_error_rate: float = 0.0  # fraction of REST requests answered with a 5xx

    def update(self, changes: dict[str, object]) -> None:
        """Apply changes from ``/admin``, refusing unknown names and out-of-range values."""
        names = {f.name: f for f in fields(self)}
        for name, value in changes.items():
            if name not in names:
                raise ValueError(f"unknown fault setting {name!r}; known: {sorted(names)}")
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
            if name.endswith(("fraction", "rate")) and value > 1:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name, value in changes.items():
            setattr(self, name, float(value))

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# The kinds of broken frame the sandbox sends, each something a client must quarantine.
MALFORMED_KINDS = (
    "truncated_json",
    "missing_field",
    "wrong_type",
    "negative_price",
    "zero_quantity",
    "excess_scale",
    "unknown_symbol",
)


# The malformed frames whose text the record keeps (GET /admin returns them all, some 200 bytes
# each): enough for any test or demo run, and a bound on the memory of a sandbox left running.
MALFORMED_FRAMES_KEPT = 100_000


@dataclass
class FaultRecord:
    skipped_ids: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    malformed: Counter[str] = field(default_factory=Counter)  # per kind, every malformed frame sent
    malformed_frames: list[str] = field(default_factory=list)  # their texts, in the order sent, up to the bound
    malformed_frames_not_kept: int = 0  # those sent past the bound: counted, text not kept
    dropped_connections: int = 0
    stalls: int = 0
    rest_errors: int = 0

    def malformed_sent(self, kind: str, text: str) -> None:
        """A malformed frame was written to a client's connection (not merely queued for it)."""
        self.malformed[kind] += 1
        if len(self.malformed_frames) < MALFORMED_FRAMES_KEPT:
            self.malformed_frames.append(text)
        else:
            self.malformed_frames_not_kept += 1

    def as_dict(self) -> dict[str, object]:
        return {
            "skipped_ids": dict(self.skipped_ids),
            "skipped": sum(len(ids) for ids in self.skipped_ids.values()),
            "malformed": dict(self.malformed),
            "malformed_total": sum(self.malformed.values()),
            "malformed_frames": list(self.malformed_frames),
            "malformed_frames_not_kept": self.malformed_frames_not_kept,
            "dropped_connections": self.dropped_connections,
            "stalls": self.stalls,
            "rest_errors": self.rest_errors,
        }


def malformed_frame(kind: str, good_payload: str, symbol: str, rng: random.Random) -> str:
    """A broken copy of a valid trade payload (raw, not wrapped); the valid one is still sent."""
    lower = symbol.lower()
    if kind == "truncated_json":
        return good_payload[: rng.randrange(1, len(good_payload) - 1)]
    if kind == "missing_field":
        return good_payload.replace(',"q":', ',"x":', 1)
    if kind == "wrong_type":
        return good_payload.replace(',"t":', ',"t":"id-', 1).replace(',"p":', '","p":', 1)
    if kind == "negative_price":
        return good_payload.replace(',"p":"', ',"p":"-', 1)
    if kind == "zero_quantity":
        start = good_payload.index(',"q":"') + 6
        end = good_payload.index('"', start)
        return good_payload[:start] + "0.00000000" + good_payload[end:]
    if kind == "excess_scale":
        start = good_payload.index(',"p":"') + 6
        end = good_payload.index('"', start)
        return good_payload[:start] + good_payload[start:end] + "123" + good_payload[end:]
    if kind == "unknown_symbol":
        return good_payload.replace(f'"s":"{symbol}"', '"s":"NOSUCHCOIN"', 1).replace(lower, "nosuchcoin")
    raise ValueError(f"unknown malformed kind {kind!r}")
