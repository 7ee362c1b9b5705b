"""Trade messages into the raw trade contract or into quarantine with a reason."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from include.ingest.parse import CombinedTrade, Control, Rejected, decode, reason, validate
from tests.support.paths import BINANCE_SAMPLES

SYMBOLS = frozenset({"ETHUSDT", "BTCUSDT"})
SAMPLE = json.loads((BINANCE_SAMPLES / "ws_spot_trade.json").read_text())


def message(stream: str | None = None, **data) -> dict:
    """The real Binance sample with its trade time in microseconds, as the client asks for, and overrides."""
    body = json.loads(json.dumps(SAMPLE))
    body["data"]["T"] = SAMPLE["data"]["T"] * 1000
    body["data"].update(data)
    if stream is not None:
        body["stream"] = stream
    return body


def frame(body: dict) -> bytes:
    return json.dumps(body).encode()


def units(text: str) -> int:
    """Exact 1e-8 units of a decimal string, computed with Decimal."""
    value = Decimal(text) * 10**8
    assert value == value.to_integral_value()
    return int(value)


def check(frames: list[bytes]):
    """Decode and validate a batch; the decoded trades, their raws, and the validation."""
    decoded = [decode(raw) for raw in frames]
    trades = [item for item in decoded if isinstance(item, CombinedTrade)]
    raws = [raw for raw, item in zip(frames, decoded, strict=True) if isinstance(item, CombinedTrade)]
    rejected = [item for item in decoded if isinstance(item, Rejected)]
    return decoded, rejected, validate(trades, raws, SYMBOLS)


# --- the valid sample --------------------------------------------------------------------------------


def test_the_binance_sample_is_a_valid_trade():
    # the sample still carries the removed b/a fields (and M): they are ignored
    assert {"b", "a", "M"} <= set(SAMPLE["data"])
    raw = frame(message())
    trade = decode(raw)
    assert isinstance(trade, CombinedTrade)
    assert reason(trade, SYMBOLS) is None
    result = validate([trade], [raw], SYMBOLS)
    assert result.rejected == []
    assert list(result.by_symbol) == ["ETHUSDT"]
    columns = result.by_symbol["ETHUSDT"]
    assert columns.symbol == "ETHUSDT"
    assert columns.trade_id.tolist() == [705291099]
    assert columns.price.tolist() == [units("4149.74000000")] == [414974000000]
    assert columns.quantity.tolist() == [units("0.43870000")] == [43870000]
    assert columns.trade_time_us.tolist() == [1639351062243000]
    assert columns.is_buyer_maker.tolist() == [True]


def test_the_sample_in_milliseconds_is_rejected():
    raw = (BINANCE_SAMPLES / "ws_spot_trade.json").read_bytes()  # T is in ms as published
    decoded, _, result = check([raw])
    assert isinstance(decoded[0], CombinedTrade)
    assert result.by_symbol == {}
    assert result.rejected == [Rejected(raw, "trade time out of range (expected microseconds)")]


# --- one test per kind of invalid message --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b'{"stream":"ethusdt@trade","data":{"e":"trade"', b"not json", b"", b'{"stream": "x",}'],
    ids=["truncated", "text", "empty", "trailing-comma"],
)
def test_malformed_json(raw):
    result = decode(raw)
    assert isinstance(result, Rejected)
    assert result.raw == raw
    assert result.reason.startswith("malformed JSON")


def test_malformed_json_after_a_wrong_type_is_still_a_rejection():
    """A type error seen before the JSON breaks must not escape as an exception."""
    raw = b'{"stream": 1, "data": {"e": "trade"'
    result = decode(raw)
    assert isinstance(result, Rejected)
    assert result.raw == raw
    assert result.reason.startswith("malformed JSON")


@pytest.mark.parametrize("field", ["e", "E", "s", "t", "p", "q", "T", "m"])
def test_missing_field(field):
    body = message()
    del body["data"][field]
    result = decode(frame(body))
    assert isinstance(result, Rejected)
    assert result.reason.startswith("invalid trade message")
    assert f"`{field}`" in result.reason


def test_missing_data():
    result = decode(b'{"stream": "ethusdt@trade"}')
    assert isinstance(result, Rejected)
    assert result.reason.startswith("invalid trade message")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("t", "705291099", "int"),
        ("t", 705291099.0, "int"),
        ("T", "1639351062243000", "int"),
        ("m", "true", "bool"),
        ("m", 1, "bool"),
        ("p", 4149.74, "str"),
        ("q", 1, "str"),
        ("s", None, "str"),
    ],
)
def test_wrong_type(field, value, expected):
    result = decode(frame(message(**{field: value})))
    assert isinstance(result, Rejected)
    assert result.reason.startswith("invalid trade message")
    assert f"Expected `{expected}`" in result.reason
    assert f"$.data.{field}" in result.reason


@pytest.mark.parametrize("field", ["t", "T"])
@pytest.mark.parametrize("value", [2**63, 2**64 + 5, -(2**63) - 1])
def test_integers_beyond_int64_are_rejected_not_a_crash(field, value):
    raw = frame(message(**{field: value}))
    _, rejected, result = check([raw, frame(message(t=1))])
    assert len(rejected) + len(result.rejected) == 1
    (bad,) = rejected + result.rejected
    assert bad.raw == raw
    assert result.by_symbol["ETHUSDT"].trade_id.tolist() == [1]  # the rest of the batch survives


# (override of data, expected reason); each one alone in a batch with a valid trade
VALUE_CASES = [
    ({"p": "0.00000000"}, "price is zero"),
    ({"p": "0"}, "price is zero"),
    ({"q": "0.00000000"}, "quantity is zero"),
    ({"q": "0.0"}, "quantity is zero"),
    ({"p": "-1.00000000"}, "price is negative"),
    ({"q": "-0.5"}, "quantity is negative"),
    ({"p": "1.000000001"}, "price has more than 8 decimals"),
    ({"q": "0.123456789"}, "quantity has more than 8 decimals"),
    ({"p": "12345678901.00000000"}, "price is beyond the scale"),
    ({"q": "99999999999"}, "quantity is beyond the scale"),
    ({"p": "1e5"}, "price is not a decimal number"),
    ({"p": "1."}, "price is not a decimal number"),
    ({"p": ".5"}, "price is not a decimal number"),
    ({"p": " 1.0"}, "price is not a decimal number"),
    ({"p": "+1.0"}, "price is not a decimal number"),
    ({"p": ""}, "price is not a decimal number"),
    ({"p": "NaN"}, "price is not a decimal number"),
    ({"p": "1.5\n"}, "price is not a decimal number"),
    ({"q": "1\n"}, "quantity is not a decimal number"),
    ({"s": "DOGEUSDT"}, "unknown symbol"),
    ({"s": "ethusdt"}, "unknown symbol"),
    ({"t": 0}, "trade id is not positive"),
    ({"t": -5}, "trade id is not positive"),
    ({"T": 1639351062243}, "trade time out of range (expected microseconds)"),
    ({"T": 1639351062243000000}, "trade time out of range (expected microseconds)"),
    ({"e": "aggTrade"}, "not a trade event"),
]


@pytest.mark.parametrize(
    ("override", "expected"), VALUE_CASES, ids=[case[1] + "-" + str(case[0]) for case in VALUE_CASES]
)
def test_invalid_value(override, expected):
    bad = frame(message(**override))
    good = frame(message(t=42, p="60759.60000000", q="0.00100000"))
    decoded, rejected, result = check([good, bad])
    assert rejected == []
    assert isinstance(decoded[1], CombinedTrade)
    assert reason(decoded[1], SYMBOLS) == expected
    assert result.rejected == [Rejected(bad, expected)]
    columns = result.by_symbol["ETHUSDT"]
    assert columns.trade_id.tolist() == [42]
    assert columns.price.tolist() == [units("60759.60000000")]
    assert columns.quantity.tolist() == [units("0.00100000")]


def test_stream_symbol_mismatch():
    bad = frame(message(stream="btcusdt@trade"))  # both symbols are known, but they disagree
    decoded, _, result = check([bad])
    assert reason(decoded[0], SYMBOLS) == "stream/symbol mismatch"
    assert result.rejected == [Rejected(bad, "stream/symbol mismatch")]
    assert result.by_symbol == {}
    other = frame(message(stream="ethusdt@aggTrade"))
    assert check([other])[2].rejected == [Rejected(other, "stream/symbol mismatch")]


@pytest.mark.parametrize(
    ("price", "quantity"),
    [
        ("1.1000000000", "2.50000000000000"),  # trailing zeros beyond 8 decimals are exact
        ("1.10000000000000000000000000000000000000000", "1.0" + "0" * 60),  # far more zeros than decimal128 holds
        ("0.1", "0.0001" + "0" * 43),  # pyarrow's cast alone reads this one as 0 (found by hypothesis)
        ("9999999999.99999999", "0.00000001"),  # the largest and the smallest value that fit
        ("0000000001.5", "00.00000001"),  # leading zeros
        ("60759.6", "7"),
    ],
)
def test_exact_values_that_are_accepted(price, quantity):
    raw = frame(message(p=price, q=quantity))
    decoded, _, result = check([raw])
    assert reason(decoded[0], SYMBOLS) is None
    assert result.rejected == []
    columns = result.by_symbol["ETHUSDT"]
    assert columns.price.tolist() == [units(price)]
    assert columns.quantity.tolist() == [units(quantity)]


def test_a_batch_of_both_symbols_splits_by_symbol_in_arrival_order():
    rows = [
        message(stream="btcusdt@trade", s="BTCUSDT", t=9, p="60000.01", q="0.1"),
        message(t=3, p="4000.5", q="1"),
        message(stream="btcusdt@trade", s="BTCUSDT", t=7, p="60000.02", q="0.2"),
        message(t=0),  # rejected
        message(t=4, p="4000.25", q="2"),
    ]
    frames = [frame(row) for row in rows]
    _, _, result = check(frames)
    assert [item.raw for item in result.rejected] == [frames[3]]
    btc, eth = result.by_symbol["BTCUSDT"], result.by_symbol["ETHUSDT"]
    assert btc.trade_id.tolist() == [9, 7]
    assert btc.price.tolist() == [units("60000.01"), units("60000.02")]
    assert btc.quantity.tolist() == [units("0.1"), units("0.2")]
    assert eth.trade_id.tolist() == [3, 4]
    assert eth.price.tolist() == [units("4000.5"), units("4000.25")]
    assert eth.quantity.tolist() == [units("1"), units("2")]


def test_an_empty_batch():
    result = validate([], [], SYMBOLS)
    assert result.by_symbol == {}
    assert result.rejected == []


# --- control messages ----------------------------------------------------------------------------------


def test_server_shutdown_is_control():
    result = decode(b'{"e":"serverShutdown","E":1764000000000000}')
    assert isinstance(result, Control)
    assert result.kind == "serverShutdown"
    assert result.body == {"e": "serverShutdown", "E": 1764000000000000}


@pytest.mark.parametrize("raw", [b'{"result":null,"id":1}', b'{"result":["btcusdt@trade"],"id":7}'])
def test_subscription_reply_is_control(raw):
    result = decode(raw)
    assert isinstance(result, Control)
    assert result.kind == "reply"
    assert result.body == json.loads(raw)


@pytest.mark.parametrize("raw", [b'{"id":1}', b"[1, 2]", b'"trade"', b"null", b'{"e":"somethingElse"}'])
def test_other_json_is_rejected(raw):
    result = decode(raw)
    assert isinstance(result, Rejected)
    assert result.reason.startswith("invalid trade message")


# --- the row check and the batch check agree ------------------------------------------------------------

digits = st.text(alphabet="0123456789", min_size=1, max_size=13)
decimal_text = st.builds(
    lambda sign, whole, dot, fraction, zeros: f"{sign}{whole}{dot}{fraction}{'0' * zeros}",
    st.sampled_from(["", "", "", "-"]),
    digits,
    st.sampled_from([".", ".", ""]),
    st.text(alphabet="0123456789", max_size=11),
    st.integers(min_value=0, max_value=45),
)
amount = st.one_of(
    decimal_text,
    decimal_text,
    decimal_text,
    st.text(alphabet="0123456789.-+eE \n", max_size=14),
    st.text(max_size=6),
)


def _decimal_or_none(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except ArithmeticError:
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(amount, amount), min_size=1, max_size=12))
@example([("1.1000000000", "1"), ("0", "1"), ("1.000000001", "1"), ("10000000000", "1"), ("9999999999", "1")])
@example([("1." + "0" * 45, "0.00000001"), ("-0", "1"), ("00000000000", "1"), ("01.5", "٣")])
@example([("1.5\n", "1"), ("2", "0.5\n"), ("3\n", "1")])
def test_row_check_and_batch_check_agree(pairs):
    frames = [frame(message(t=index + 1, p=price, q=quantity)) for index, (price, quantity) in enumerate(pairs)]
    trades = [decode(raw) for raw in frames]
    assert all(isinstance(trade, CombinedTrade) for trade in trades)
    result = validate(trades, frames, SYMBOLS)
    row_accepts = [reason(trade, SYMBOLS) is None for trade in trades]
    accepted = result.by_symbol["ETHUSDT"].trade_id.tolist() if "ETHUSDT" in result.by_symbol else []
    assert accepted == [index + 1 for index, ok in enumerate(row_accepts) if ok]
    assert [item.raw for item in result.rejected] == [
        raw for raw, ok in zip(frames, row_accepts, strict=True) if not ok
    ]
    for item in result.rejected:
        assert item.reason == reason(trades[frames.index(item.raw)], SYMBOLS)
    # what is accepted is exact, positive, at most 8 decimals and 10 whole digits
    good = [pair for pair, ok in zip(pairs, row_accepts, strict=True) if ok]
    if good:
        columns = result.by_symbol["ETHUSDT"]
        assert columns.price.tolist() == [units(price) for price, _ in good]
        assert columns.quantity.tolist() == [units(quantity) for _, quantity in good]
    for price, quantity in good:
        for text in (price, quantity):
            value = _decimal_or_none(text)
            assert value is not None
            assert 0 < value < 10**10
            assert value == value.quantize(Decimal("1E-8"))
