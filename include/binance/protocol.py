"""Binance spot's protocol facts, in one place: the client, the stream and the sandbox all use these.

Sources: Binance's spot API documentation and changelog (see docs/architecture.md, "Binance facts").
"""

from __future__ import annotations

import re

# --- REST -------------------------------------------------------------------------------------

# Request weight per endpoint (GET /api/v3/<endpoint>), counted per IP per clock minute.
WEIGHTS: dict[str, int] = {
    "ping": 1,
    "time": 1,
    "exchangeInfo": 20,
    "trades": 25,
    "historicalTrades": 25,
    "aggTrades": 4,
    "klines": 2,
    "uiKlines": 2,
    "avgPrice": 2,
}
WEIGHT_LIMIT_PER_MINUTE = 6000
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
WEIGHT_HEADER_LEGACY = "X-MBX-USED-WEIGHT"  # the same count, still sent
TIME_UNIT_HEADER = "X-MBX-TIME-UNIT"
TIME_UNITS = ("MILLISECOND", "MICROSECOND")  # REST header and WebSocket ``timeUnit``; milliseconds by default
MAX_LIMIT = 1000  # rows per page of trades, historicalTrades, aggTrades and klines
IP_BAN_FIRST_SECONDS = 120.0  # a 418 ban lasts 2 minutes at first and grows for repeat offenders
# exchangeInfo's other rateLimits (orders are not served here, but clients read the list).
ORDER_LIMITS = (("SECOND", 10, 100), ("DAY", 1, 200_000))  # (interval, intervalNum, limit)
RAW_REQUESTS_LIMIT = ("MINUTE", 5, 61_000)
# The order book (GET /api/v3/depth): levels by default and at most (a larger limit gets the most),
# and its weight by limit: (largest limit, weight), the first that fits.
DEPTH_DEFAULT_LIMIT = 100
DEPTH_MAX_LIMIT = 5000
DEPTH_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (DEPTH_MAX_LIMIT, 250))
BOOK_TICKER_WEIGHT_ONE = 2  # GET /api/v3/ticker/bookTicker for one symbol
BOOK_TICKER_WEIGHT_MANY = 4  # for a symbols list, or for every symbol
# Legal ranges of query parameters, as Binance's -1100 messages quote them.
SYMBOL_PARAM_PATTERN = re.compile(r"^[A-Z0-9-_.]{1,20}$")
INTEGER_PARAM_PATTERN = re.compile(r"^-?[0-9]{1,20}$")  # Binance's message says '^[0-9]{1,20}$'

# Tickers. ticker/24hr weighs by how many symbols it answers: (up to this many symbols, weight), and
# every larger list or all symbols 80. ticker (rolling window) weighs 4 a symbol, 200 at most once more
# than 50 are asked for, and takes at most 100. ticker/price weighs 2 for one symbol, 4 for a list or all.
TICKER_24HR_WEIGHTS = ((20, 2), (100, 40))
TICKER_24HR_WEIGHT_ALL = 80
ROLLING_TICKER_WEIGHT_PER_SYMBOL = 4
ROLLING_TICKER_WEIGHT_CAP = 200
ROLLING_TICKER_CAP_ABOVE_SYMBOLS = 50
ROLLING_TICKER_MAX_SYMBOLS = 100
TICKER_PRICE_WEIGHT_ONE = 2
TICKER_PRICE_WEIGHT_MANY = 4
TICKER_TYPES = ("FULL", "MINI")  # FULL by default
TICKER_24HR_MINUTES = 24 * 60
# windowSize: a number and one unit (units cannot be combined): unit -> (largest number, minutes per one).
ROLLING_WINDOW_UNITS = {"m": (59, 1), "h": (23, 60), "d": (7, 24 * 60)}
ROLLING_WINDOW_DEFAULT = "1d"
PERCENT_DECIMALS = 3  # priceChangePercent: "-95.960"
AVG_PRICE_MINUTES = 5
# The legal range Binance quotes when a symbols list is malformed.
SYMBOLS_PARAM_RANGE = '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'

# Binance's error codes, as the body {"code": ..., "msg": ...} carries them.
ERROR_UNKNOWN = -1001  # internal error; try again
ERROR_UNSUPPORTED_OPERATION = -1020
ERROR_TOO_MANY_REQUESTS = -1003
ERROR_START_AFTER_END = -1023
ERROR_ILLEGAL_CHARS = -1100
ERROR_TOO_MANY_PARAMETERS = -1101
ERROR_MANDATORY_PARAM = -1102
ERROR_UNREAD_PARAMS = -1104
ERROR_INVALID_INTERVAL = -1120
ERROR_INVALID_SYMBOL = -1121
ERROR_PARAM_COMBINATION = -1128
ERROR_INVALID_PARAM = -1130
ERROR_INVALID_TICKER_TYPE = -1139
ERROR_DUPLICATE_SYMBOLS = -1151

# --- WebSocket --------------------------------------------------------------------------------

MAX_STREAMS_PER_CONNECTION = 1024
MAX_INCOMING_MESSAGES_PER_SECOND = 5  # pings, pongs and JSON control messages count
CONNECTION_ATTEMPTS_PER_WINDOW = 300
CONNECTION_ATTEMPT_WINDOW_SECONDS = 300.0
CONNECTION_LIFETIME_SECONDS = 24 * 3600.0
PING_INTERVAL_SECONDS = 20.0
PONG_TIMEOUT_SECONDS = 60.0
# A lower-case symbol and a stream, e.g. btcusdt@trade, with an update speed (btcusdt@depth@100ms);
# or an all-market stream (!ticker@arr).
STREAM_NAME_PATTERN = re.compile(r"^(?:[a-z0-9]+|![A-Za-z0-9_]+)@[A-Za-z0-9_]+(?:@[0-9]+ms)?$")
PARTIAL_DEPTH_LEVELS = (5, 10, 20)  # <symbol>@depth<levels>
DEPTH_UPDATE_SPEEDS_MS = (1000, 100)  # the depth streams' periods: the default, and @100ms
# Streams about every symbol at once (the others are <lower-case symbol>@<kind>).
ALL_MARKET_STREAMS = ("!miniTicker@arr", "!ticker@arr")
# How often the periodic streams are pushed: klines every 2 s (1 s klines every second), tickers every second.
KLINE_UPDATE_MS = 2000
KLINE_1S_UPDATE_MS = 1000
TICKER_UPDATE_MS = 1000
# A control message's id: a 64-bit signed integer, an alphanumeric string of at most 36, or null.
REQUEST_ID_TEXT_PATTERN = re.compile(r"^[A-Za-z0-9]{0,36}$")
REQUEST_ID_BITS = 64
# Error codes of the JSON control messages' error objects {"code": ..., "msg": ..., "id": ...}.
WS_ERROR_UNKNOWN_PROPERTY = 0
WS_ERROR_INVALID_VALUE_TYPE = 1
WS_ERROR_INVALID_REQUEST = 2
WS_ERROR_INVALID_JSON = 3

# --- Symbols ----------------------------------------------------------------------------------

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,20}$")
