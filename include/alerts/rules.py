"""Market alert rules: what a user asks to be told about, parsed and checked before anything runs.

A rule names a symbol and a candle interval and is one of three types (README, "Alerts"):

- ``price_cross``: the close crosses ``level`` (``up``, ``down`` or ``both``) from one closed,
  complete candle to the next;
- ``percent_move``: the close moved at least ``percent`` from the open of ``window`` ago (``up``,
  ``down`` or ``either``);
- ``volume_spike``: the candle's volume is at least ``factor`` times the average of the ``trailing``
  candles before it.

Rules come from ``include/alerts/rules.yaml`` (in the repo) and from the lake, where the dashboard
stores the ones users add (``include/alerts/user_rules.py``). Numbers are exact decimals: the YAML is
read with floats left as text, so ``level: 100000.1`` is ``Decimal("100000.1")``, never a float.

``parse_rules`` never raises on a bad rule: it returns the good rules and one ``RuleError`` per bad
one, each naming the rule, so one typo does not silence every other alert. A file that is not YAML at
all is one error naming the file and the line.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from include.candles import BY_NAME, Interval

RULES_FILE = Path(__file__).with_name("rules.yaml")
RULE_TYPES = ("price_cross", "percent_move", "volume_spike")
DIRECTIONS = {"price_cross": ("up", "down", "both"), "percent_move": ("up", "down", "either")}
RULE_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# Candles a rule reads back (a volume spike's trailing average, a percent move's window): bounded, so
# one rule reads bounded rows and no date arithmetic overflows.
MAX_TRAILING = MAX_WINDOW = 1000
_DURATION = re.compile(r"(\d+)([mhd])")
_DECIMAL_TEXT = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?")  # plain decimal text: no exponent, no leading zeros
_DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400}
_COMMON = {"id", "type", "symbol", "interval", "since", "description"}
_FIELDS = {
    "price_cross": _COMMON | {"level", "direction"},
    "percent_move": _COMMON | {"window", "percent", "direction"},
    "volume_spike": _COMMON | {"trailing", "factor"},
}


@dataclass(frozen=True)
class Rule:
    """One market alert rule, valid: every field checked. ``since``: candles closing before it are not
    evaluated (None: from when the evaluation first saw the rule)."""

    rule_id: str
    type: str
    symbol: str
    interval: Interval
    direction: str = ""
    level: Decimal | None = None
    window: int = 0  # percent_move: candles in the window (the window over the interval)
    percent: Decimal | None = None
    trailing: int = 0
    factor: Decimal | None = None
    since: datetime | None = None
    description: str = ""
    source: str = ""  # where it came from: the rules file, or "dashboard"

    @property
    def fingerprint(self) -> str:
        """What the rule asks, hashed: an edited rule is a new rule (its alerts have new ids)."""
        asked = {
            "id": self.rule_id,
            "type": self.type,
            "symbol": self.symbol,
            "interval": self.interval.name,
            "direction": self.direction,
            "level": _text(self.level),
            "window": self.window,
            "percent": _text(self.percent),
            "trailing": self.trailing,
            "factor": _text(self.factor),
        }
        return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def context(self) -> int:
        """How many candles before the evaluated one its condition reads (its own, and one more for the
        edge: a rule fires when its condition becomes true, not on every candle it stays true)."""
        own = {"price_cross": 1, "percent_move": self.window - 1, "volume_spike": self.trailing}[self.type]
        return own + 1

    def describe(self) -> str:
        """One line a person reads in a notification."""
        what = {
            "price_cross": f"close crosses {_text(self.level)} ({self.direction})",
            "percent_move": f"moves {_text(self.percent)}% within {self.window} x {self.interval.name} "
            f"({self.direction})",
            "volume_spike": f"volume >= {_text(self.factor)} x the average of the {self.trailing} candles before",
        }[self.type]
        return f"{self.symbol} {self.interval.name}: {what}"


@dataclass(frozen=True)
class RuleError:
    """A rule refused, with the rule's name (its id, or its place in the file) and why."""

    rule: str
    reason: str
    source: str = ""

    def __str__(self) -> str:
        where = f" in {self.source}" if self.source else ""
        return f"rule {self.rule}{where}: {self.reason}"


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)

    def extend(self, other: RuleSet) -> None:
        """Add ``other``'s rules; one whose id is taken already is refused, naming both sources."""
        taken = {rule.rule_id: rule.source for rule in self.rules}
        for rule in other.rules:
            if rule.rule_id in taken:
                reason = f"the id is already used by a rule in {taken[rule.rule_id]}"
                self.errors.append(RuleError(rule.rule_id, reason, rule.source))
            else:
                self.rules.append(rule)
                taken[rule.rule_id] = rule.source
        self.errors.extend(other.errors)


class _ExactLoader(yaml.SafeLoader):
    """YAML without implicit numbers: ``1.5`` stays the text ``"1.5"`` for ``Decimal`` to read exactly,
    and ``010``, ``0x1F`` or ``1:30`` stay text too (YAML 1.1 would read them as 8, 31 and 90)."""


_NUMBERS = ("tag:yaml.org,2002:float", "tag:yaml.org,2002:int")
_ExactLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in _NUMBERS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_rules(text: str, source: str, symbols: Iterable[str]) -> RuleSet:
    """The rules of one YAML document (``rules: [...]``), each checked against the known ``symbols``."""
    try:
        document = yaml.load(text, Loader=_ExactLoader)  # a SafeLoader, without floats
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        return RuleSet(errors=[RuleError("(file)", f"malformed YAML{line}: {problem}", source)])
    if document is None:
        return RuleSet()
    if not isinstance(document, dict) or not isinstance(document.get("rules", []), list):
        return RuleSet(errors=[RuleError("(file)", "expected a mapping with a list under 'rules:'", source)])
    result, known, seen = RuleSet(), frozenset(symbols), set[str]()
    for position, entry in enumerate(document.get("rules") or [], start=1):
        name = _name_of(entry, position)
        try:
            rule = parse_rule(entry, known, source)
        except RuleInvalid as error:
            result.errors.append(RuleError(name, str(error), source))
            continue
        if rule.rule_id in seen:
            result.errors.append(RuleError(name, "the id is used twice in this file", source))
            continue
        seen.add(rule.rule_id)
        result.rules.append(rule)
    return result


def read_rules_file(path: Path, symbols: Iterable[str]) -> RuleSet:
    """The rules of a file; a file that cannot be read is one error naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return RuleSet(errors=[RuleError("(file)", f"cannot be read: {error}", str(path))])
    return parse_rules(text, str(path), symbols)


class RuleInvalid(ValueError):
    """Why one rule is refused."""


def parse_rule(entry: object, symbols: frozenset[str], source: str = "") -> Rule:
    """One rule from its mapping; raises RuleInvalid with the reason."""
    if not isinstance(entry, dict):
        raise RuleInvalid("a rule is a mapping of fields (id, type, symbol, interval, ...)")
    rule_type = _required(entry, "type")
    if rule_type not in RULE_TYPES:
        raise RuleInvalid(f"type {rule_type!r} is not one of {', '.join(RULE_TYPES)}")
    unknown = sorted(set(entry) - _FIELDS[rule_type])
    if unknown:
        raise RuleInvalid(f"unknown field {unknown[0]!r} for a {rule_type} rule")
    rule_id = _required(entry, "id")
    if not RULE_ID.fullmatch(rule_id):
        raise RuleInvalid(f"id {rule_id!r} is not 1-64 of a-z, 0-9, - and _ (starting with a letter or digit)")
    symbol = _required(entry, "symbol")
    if symbol not in symbols:
        raise RuleInvalid(f"symbol {symbol!r} is not streamed (SYMBOLS: {', '.join(sorted(symbols))})")
    interval_name = _required(entry, "interval")
    if interval_name not in BY_NAME:
        raise RuleInvalid(f"interval {interval_name!r} is not one of {', '.join(BY_NAME)}")
    common = {
        "rule_id": rule_id,
        "type": rule_type,
        "symbol": symbol,
        "interval": BY_NAME[interval_name],
        "since": _since(entry.get("since")),
        "description": "" if entry.get("description") is None else str(entry["description"]),
        "source": source,
    }
    return Rule(**common, **_TYPE_FIELDS[rule_type](entry, BY_NAME[interval_name]))


def _price_cross(entry: Mapping[str, Any], interval: Interval) -> dict[str, Any]:
    return {"level": _positive(entry, "level"), "direction": _direction(entry, "price_cross", "both")}


def _percent_move(entry: Mapping[str, Any], interval: Interval) -> dict[str, Any]:
    window_seconds = _duration(entry, "window")
    interval_seconds = int(interval.length.total_seconds())
    if window_seconds % interval_seconds:
        raise RuleInvalid(f"window {entry['window']!r} is not a whole number of {interval.name} candles")
    if window_seconds // interval_seconds > MAX_WINDOW:
        raise RuleInvalid(f"window {entry['window']!r} is more than {MAX_WINDOW} {interval.name} candles")
    return {
        "window": window_seconds // interval_seconds,
        "percent": _positive(entry, "percent"),
        "direction": _direction(entry, "percent_move", "either"),
    }


def _volume_spike(entry: Mapping[str, Any], interval: Interval) -> dict[str, Any]:
    trailing = entry.get("trailing")
    text = str(trailing) if isinstance(trailing, (int, str)) and not isinstance(trailing, bool) else ""
    if not re.fullmatch(r"[1-9]\d{0,3}", text) or int(text) > MAX_TRAILING:
        raise RuleInvalid(f"trailing {trailing!r} is not a whole number of candles from 1 to {MAX_TRAILING}")
    return {"trailing": int(text), "factor": _positive(entry, "factor")}


_TYPE_FIELDS = {"price_cross": _price_cross, "percent_move": _percent_move, "volume_spike": _volume_spike}


def _name_of(entry: object, position: int) -> str:
    if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"]:
        return entry["id"]
    return f"#{position}"


def _required(entry: Mapping[str, Any], name: str) -> str:
    value = entry.get(name)
    if value is None or value == "":
        raise RuleInvalid(f"{name} is missing")
    if not isinstance(value, str):
        raise RuleInvalid(f"{name} {value!r} is not text")
    return value


def _positive(entry: Mapping[str, Any], name: str) -> Decimal:
    value = entry.get(name)
    if value is None:
        raise RuleInvalid(f"{name} is missing")
    text = str(value).strip() if isinstance(value, (str, int, Decimal)) and not isinstance(value, bool) else ""
    if not _DECIMAL_TEXT.fullmatch(text):
        raise RuleInvalid(f"{name} {value!r} is not a number like 60000 or 2.5")
    number = Decimal(text)
    if number <= 0:
        raise RuleInvalid(f"{name} {value!r} is not a positive number")
    return number


def _duration(entry: Mapping[str, Any], name: str) -> int:
    value = entry.get(name)
    text = str(value).strip() if value is not None else ""
    if text.startswith("-"):
        raise RuleInvalid(f"{name} {value!r} is negative")
    match = _DURATION.fullmatch(text)
    if match is None or int(match.group(1)) == 0:
        raise RuleInvalid(f"{name} {value!r} is not a positive duration like 15m, 4h or 1d")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _direction(entry: Mapping[str, Any], rule_type: str, default: str) -> str:
    value = entry.get("direction", default)
    if value not in DIRECTIONS[rule_type]:
        raise RuleInvalid(f"direction {value!r} is not one of {', '.join(DIRECTIONS[rule_type])}")
    return value


def _since(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):  # YAML reads an unquoted timestamp as one
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise RuleInvalid(f"since {value!r} is not an ISO time like 2026-12-01T00:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _text(value: Decimal | None) -> str:
    return "" if value is None else format(value.normalize(), "f")


def rule_as_mapping(rule: Rule) -> dict[str, Any]:
    """The rule as its YAML/JSON fields (decimals as text): what the dashboard stores and shows."""
    fields: dict[str, Any] = {"id": rule.rule_id, "type": rule.type, "symbol": rule.symbol}
    fields["interval"] = rule.interval.name
    if rule.type == "price_cross":
        fields |= {"level": _text(rule.level), "direction": rule.direction}
    elif rule.type == "percent_move":
        seconds = int(rule.interval.length.total_seconds()) * rule.window
        fields |= {"window": f"{seconds // 60}m", "percent": _text(rule.percent), "direction": rule.direction}
    else:
        fields |= {"trailing": rule.trailing, "factor": _text(rule.factor)}
    if rule.since is not None:
        fields["since"] = rule.since.isoformat()
    if rule.description:
        fields["description"] = rule.description
    return fields
