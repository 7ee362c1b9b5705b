"""Combined-stream trade messages into the raw trade contract, or into quarantine with a reason.

Decoding is per message with msgspec (strict types, so a wrong type is an error, not a guess);
the checks on values run per micro-batch, as vectorised pyarrow/numpy operations, which keeps the
receive loop cheap. Prices and quantities go from the wire string to integer 1e-8 units through
pyarrow's exact string-to-decimal cast: a value is never rounded and never held in a float.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from include.lake.trades import TradeColumns

MAX_DECIMALS = 8
# decimal(18, 8) keeps price x quantity exact inside decimal128; Binance values are far below it.
MAX_WHOLE_DIGITS = 10
# Trade times must be microseconds (the client asks for timeUnit=MICROSECOND) between 2017 and 2100.
MIN_TIME_US, MAX_TIME_US = 1_483_228_800_000_000, 4_102_444_800_000_000
_UNITS = pa.decimal128(18, 8)
# Ids and times go into int64 columns: a larger number is an invalid message, not a crash of the batch.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class TradeEvent(msgspec.Struct, gc=False):
    e: str
    E: Int64
    s: str
    t: Int64
    p: str
    q: str
    T: Int64
    m: bool


class CombinedTrade(msgspec.Struct, gc=False):
    stream: str
    data: TradeEvent


_decode_trade = msgspec.json.Decoder(CombinedTrade).decode
_decode_trades = msgspec.json.Decoder(list[CombinedTrade]).decode
_decode_any = msgspec.json.Decoder().decode


@dataclass(frozen=True)
class Rejected:
    raw: bytes
    reason: str


@dataclass(frozen=True)
class Control:
    """A message that is not a trade and not an error: a control reply or ``serverShutdown``."""

    kind: str
    body: dict[str, object]


def decode(frame: bytes) -> CombinedTrade | Control | Rejected:
    """One frame: a trade to validate later, a control message, or a rejection with its reason."""
    try:
        return _decode_trade(frame)
    except msgspec.ValidationError as error:
        problem = str(error)
    except msgspec.DecodeError as error:
        return Rejected(frame, f"malformed JSON: {error}")
    try:
        body = _decode_any(frame)
    except msgspec.DecodeError as error:  # a type error came before the JSON broke off
        return Rejected(frame, f"malformed JSON: {error}")
    if isinstance(body, dict):
        if body.get("e") == "serverShutdown":
            return Control("serverShutdown", body)
        if "result" in body and "id" in body:
            return Control("reply", body)
    return Rejected(frame, f"invalid trade message: {problem}")


TRADE_FRAME_PREFIX = b'{"stream"'


def looks_like_trade(frame: bytes) -> bool:
    """The receive loop's only check: combined-stream data starts with its envelope.

    Anything else (a control reply, ``serverShutdown``, junk) is decoded at once; frames that pass
    are decoded later, in bulk, and whatever is wrong with them is found then.
    """
    return frame.startswith(TRADE_FRAME_PREFIX)


@dataclass
class Decoded:
    trades: list[CombinedTrade]
    raws: list[bytes]  # the frame of each trade, for quarantine if validation refuses it
    rejected: list[Rejected]


def decode_many(frames: list[bytes]) -> Decoded:
    """Decode a batch of frames in one msgspec call; frame by frame only if some frame is bad."""
    if not frames:
        return Decoded([], [], [])
    try:
        # One copy of the batch, not two: the brackets ride on the first and last frames.
        items = frames[:]
        items[0] = b"[" + items[0]
        items[-1] = items[-1] + b"]"
        trades = _decode_trades(b",".join(items))
        if len(trades) == len(frames):  # a frame holding two objects would shift every row
            return Decoded(trades, frames, [])
    except msgspec.DecodeError:  # also msgspec.ValidationError, its subclass
        pass
    decoded = Decoded([], [], [])
    for frame in frames:
        message = decode(frame)
        if type(message) is CombinedTrade:
            decoded.trades.append(message)
            decoded.raws.append(frame)
        elif type(message) is Rejected:
            decoded.rejected.append(message)
    return decoded


def _units(values: pa.Array) -> np.ndarray:
    """Unscaled int64 units of a decimal(18, 8) array: the low 8 bytes of each 16-byte value."""
    words = np.frombuffer(values.buffers()[1], dtype=np.int64)
    return words[values.offset * 2 :: 2][: len(values)].copy()


_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")  # used with fullmatch: "$" would accept a trailing newline
_VALID_DECIMAL = rf"^[0-9]{{1,{MAX_WHOLE_DIGITS}}}(\.[0-9]{{1,{MAX_DECIMALS}}}0*)?$"
_EXTRA_ZEROS = rf"^([0-9]+\.[0-9]{{1,{MAX_DECIMALS}}})0*$"


def _exact_units(text: pa.Array) -> np.ndarray:
    """Integer 1e-8 units of valid decimal strings, through pyarrow's exact cast (never a float)."""
    # A valid string longer than the widest the contract allows only carries zeros past the 8th
    # decimal. They are exact, but pyarrow's cast overflows on some and silently reads others
    # (40-odd digits) as 0: drop them first. The usual batch has none and skips the regex.
    if len(text) and pc.max(pc.utf8_length(text)).as_py() > MAX_WHOLE_DIGITS + 1 + MAX_DECIMALS:
        text = pc.replace_substring_regex(text, _EXTRA_ZEROS, r"\1")
    return _units(pc.cast(text, _UNITS))


def _decimal_problem(name: str, text: str) -> str | None:
    if text.startswith("-"):
        return f"{name} is negative"
    if not _DECIMAL.fullmatch(text):
        return f"{name} is not a decimal number"
    whole, _, fraction = text.partition(".")
    if len(fraction.rstrip("0")) > MAX_DECIMALS:
        return f"{name} has more than {MAX_DECIMALS} decimals"
    if len(whole) > MAX_WHOLE_DIGITS:
        return f"{name} is beyond the scale"
    if not whole.strip("0") and not fraction.strip("0"):
        return f"{name} is zero"
    return None


def reason(trade: CombinedTrade, symbols: frozenset[str]) -> str | None:
    """Why one decoded trade is invalid, or None. The batch check below is the fast equivalent."""
    data = trade.data
    if data.e != "trade":
        return "not a trade event"
    if data.s not in symbols:
        return "unknown symbol"
    if trade.stream != f"{data.s.lower()}@trade":
        return "stream/symbol mismatch"
    if data.t <= 0:
        return "trade id is not positive"
    if not MIN_TIME_US <= data.T <= MAX_TIME_US:
        return "trade time out of range (expected microseconds)"
    return _decimal_problem("price", data.p) or _decimal_problem("quantity", data.q)


@dataclass
class Validated:
    by_symbol: dict[str, TradeColumns]
    rejected: list[Rejected]


def _is(mask: pa.Array) -> np.ndarray:
    return mask.to_numpy(zero_copy_only=False)


# attrgetter through map() is the cheapest way to pull a column out of a list of structs.
_data, _stream = attrgetter("data"), attrgetter("stream")
_event, _symbol, _price, _quantity = attrgetter("e"), attrgetter("s"), attrgetter("p"), attrgetter("q")
_trade_id, _time, _maker = attrgetter("t"), attrgetter("T"), attrgetter("m")


def validate(trades: list[CombinedTrade], raws: list[bytes], symbols: frozenset[str]) -> Validated:
    """Check a batch of decoded trades; valid rows as columns per symbol, the rest with reasons.

    The whole batch is screened with vectorised checks; only rows that fail are looked at one by
    one, to name the reason.
    """
    if not trades:
        return Validated({}, [])
    data = list(map(_data, trades))
    symbol = pa.array(list(map(_symbol, data)), pa.string())
    # each row's own stream: a trade of one symbol on another symbol's stream is a mismatch
    streams = pc.binary_join_element_wise(pc.utf8_lower(symbol), "@trade", "")
    price = pa.array(list(map(_price, data)), pa.string())
    quantity = pa.array(list(map(_quantity, data)), pa.string())
    trade_id = np.fromiter(map(_trade_id, data), dtype=np.int64, count=len(data))
    time_us = np.fromiter(map(_time, data), dtype=np.int64, count=len(data))
    maker = np.fromiter(map(_maker, data), dtype=np.bool_, count=len(data))
    ok = (
        _is(pc.equal(pa.array(list(map(_event, data)), pa.string()), "trade"))
        & _is(pc.is_in(symbol, pa.array(sorted(symbols), pa.string())))
        & _is(pc.equal(pa.array(list(map(_stream, trades)), pa.string()), streams))
        & (trade_id > 0)
        & (time_us >= MIN_TIME_US)
        & (time_us <= MAX_TIME_US)
        & _is(pc.match_substring_regex(price, _VALID_DECIMAL))
        & _is(pc.match_substring_regex(quantity, _VALID_DECIMAL))
    )
    good = np.flatnonzero(ok)
    everything = len(good) == len(trades)  # the usual batch: no copies needed
    price_units = _exact_units(price if everything else price.take(pa.array(good)))
    quantity_units = _exact_units(quantity if everything else quantity.take(pa.array(good)))
    nonzero = (price_units > 0) & (quantity_units > 0)
    ok[good[~nonzero]] = False
    rejected = []
    for index in np.flatnonzero(~ok):
        why = reason(trades[index], symbols)
        if why is None:  # the two checks disagree: a bug here, never silently a good trade
            raise AssertionError(f"batch check refused a trade the row check accepts: {raws[index]!r}")
        rejected.append(Rejected(raws[index], why))
    good, price_units, quantity_units = good[nonzero], price_units[nonzero], quantity_units[nonzero]
    encoded = symbol.dictionary_encode()
    codes = encoded.indices.to_numpy()[good]
    by_symbol = {}
    for code, name in enumerate(encoded.dictionary.to_pylist()):
        rows = np.flatnonzero(codes == code)
        if len(rows):
            picked = good[rows]
            by_symbol[name] = TradeColumns(
                name, trade_id[picked], price_units[rows], quantity_units[rows], time_us[picked], maker[picked]
            )
    return Validated(by_symbol, rejected)
