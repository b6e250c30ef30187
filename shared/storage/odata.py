"""The part of Table Storage's OData `$filter` language the stores use, evaluated in memory.

Supported: comparisons `eq ne gt ge lt le` between a property name and a literal (`'text'` with `''` escaping,
`true`/`false`, integers with an optional `L`, decimals, `datetime'…'`, `guid'…'`, `X'…'`), joined with `and`, `or`,
`not` and parentheses. `@name` parameters are substituted first, word by word, exactly as azure-data-tables does
(so a parameter glued to a parenthesis fails here as it would there). As in the service, a comparison with a
property the entity lacks, or of values of different types, is false. Anything else is an InvalidInput, so a test
on the memory backend fails where Table Storage would refuse the query.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from uuid import UUID

from shared.domain.errors import InvalidInput

Predicate = Callable[[Mapping[str, Any]], bool]

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^']|'')*')
    | (?P<typed>(?:datetime|guid|X|binary)'[^']*')
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?L?)
    | (?P<paren>[()])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""", re.VERBOSE)
_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}


def substitute(filter: str, parameters: Mapping[str, Any] | None) -> str:
    """Replace `@name` words by OData literals of their values (what azure-data-tables sends)."""
    if not parameters:
        return filter
    words = filter.split(" ")
    for index, word in enumerate(words):
        if word.startswith("@"):
            try:
                value = parameters[word[1:]]
            except KeyError:
                raise InvalidInput(f"filter parameter {word} has no value") from None
            words[index] = literal(value)
    return " ".join(words)


def literal(value: Any) -> str:
    if value is True or value is False:
        return str(value).lower()
    if isinstance(value, float):
        return str(value)
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 32 else f"{value}L"
    if isinstance(value, datetime):
        return f"datetime'{value.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'"
    if isinstance(value, UUID):
        return f"guid'{value}'"
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    if isinstance(value, Enum):
        value = value.value
    text = str(value).replace("'", "''")
    return f"'{text}'"


def compile_filter(filter: str, parameters: Mapping[str, Any] | None = None) -> Predicate:
    """A predicate over entities for an OData filter (with parameters)."""
    tokens = _tokenize(substitute(filter, parameters))
    parser = _Parser(tokens, filter)
    predicate = parser.expression()
    if parser.position != len(tokens):
        raise InvalidInput(f"unexpected {tokens[parser.position][1]!r} in filter {filter!r}")
    return predicate


@dataclass(frozen=True)
class KeyRange:
    """PartitionKeys a filter's matches can have: between `low` and `high` (None: unbounded)."""

    low: str | None = None
    low_inclusive: bool = True
    high: str | None = None
    high_inclusive: bool = True

    def narrowed(self, operator: str, value: str) -> KeyRange:
        low, low_inclusive, high, high_inclusive = self.low, self.low_inclusive, self.high, self.high_inclusive
        if operator in ("eq", "gt", "ge") and (low is None or value > low or (value == low and operator == "gt")):
            low, low_inclusive = value, operator != "gt"
        if operator in ("eq", "lt", "le") and (high is None or value < high or (value == high and operator == "lt")):
            high, high_inclusive = value, operator != "lt"
        return KeyRange(low, low_inclusive, high, high_inclusive)


EVERY_KEY = KeyRange()
_FLIPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}


def partition_range(filter: str, parameters: Mapping[str, Any] | None = None) -> KeyRange:
    """The PartitionKey range every entity matching `filter` lies in, from the PartitionKey comparisons it joins with
    `and` (a comparison under `or` or `not` leaves the range open): lets a store read only those partitions. Only
    narrows: the filter itself still decides each entity. `filter` must compile (`compile_filter`)."""
    return _narrow(_tokenize(substitute(filter, parameters)), EVERY_KEY)


def _narrow(tokens: list[tuple[str, Any]], found: KeyRange) -> KeyRange:
    tokens = _unwrap(tokens)
    conjuncts: list[list[tuple[str, Any]]] = [[]]
    depth = 0
    for token in tokens:
        depth += {"(": 1, ")": -1}.get(token[0], 0)
        if depth == 0 and token[0] == "or":
            return found
        if depth == 0 and token[0] == "and":
            conjuncts.append([])
        else:
            conjuncts[-1].append(token)
    if len(conjuncts) > 1:
        for conjunct in conjuncts:
            found = _narrow(conjunct, found)
        return found
    if len(tokens) != 3 or tokens[1][0] not in _COMPARISONS or tokens[1][0] == "ne":
        return found  # `not …`, another property, or a comparison that bounds nothing
    (left_kind, left), (operator, _), (right_kind, right) = tokens
    if left_kind == "name" and left == "PartitionKey" and right_kind == "value" and isinstance(right, str):
        return found.narrowed(operator, right)
    if right_kind == "name" and right == "PartitionKey" and left_kind == "value" and isinstance(left, str):
        return found.narrowed(_FLIPPED[operator], left)
    return found


def _unwrap(tokens: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """`tokens` without parentheses around all of them."""
    while len(tokens) >= 2 and tokens[0][0] == "(" and tokens[-1][0] == ")":
        depth = 0
        for index, token in enumerate(tokens):
            depth += {"(": 1, ")": -1}.get(token[0], 0)
            if depth == 0 and index < len(tokens) - 1:
                return tokens  # the first parenthesis closes before the end: `(a) and (b)`
        tokens = tokens[1:-1]
    return tokens


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise InvalidInput(f"cannot read filter {text!r} at {text[position:position + 20]!r}")
        position = match.end()
        kind = match.lastgroup
        raw = match.group(kind)
        if kind == "string":
            tokens.append(("value", raw[1:-1].replace("''", "'")))
        elif kind == "typed":
            tokens.append(("value", _typed(raw)))
        elif kind == "number":
            if raw.endswith("L"):
                tokens.append(("value", int(raw[:-1])))
            elif any(ch in raw for ch in ".eE"):
                tokens.append(("value", float(raw)))
            else:
                tokens.append(("value", int(raw)))
        elif kind == "paren":
            tokens.append((raw, raw))
        elif raw in ("true", "false"):
            tokens.append(("value", raw == "true"))
        elif raw in ("and", "or", "not") or raw in _COMPARISONS:
            tokens.append((raw, raw))
        else:
            tokens.append(("name", raw))
    return tokens


def _typed(raw: str) -> Any:
    prefix, _, rest = raw.partition("'")
    body = rest[:-1]
    if prefix == "datetime":
        parsed = datetime.fromisoformat(body)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if prefix == "guid":
        return UUID(body)
    return bytes.fromhex(body)


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return True
    return type(a) is type(b) or (isinstance(a, datetime) and isinstance(b, datetime)) or (
        isinstance(a, str) and isinstance(b, str))


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
}


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]], source: str):
        self.tokens = tokens
        self.position = 0
        self.source = source

    def peek(self) -> str | None:
        return self.tokens[self.position][0] if self.position < len(self.tokens) else None

    def take(self, kind: str | None = None) -> tuple[str, Any]:
        if self.position >= len(self.tokens):
            raise InvalidInput(f"filter {self.source!r} ends too early")
        token = self.tokens[self.position]
        if kind is not None and token[0] != kind:
            raise InvalidInput(f"expected {kind} in filter {self.source!r}, found {token[1]!r}")
        self.position += 1
        return token

    def expression(self) -> Predicate:
        return self._joined("or", self.conjunction, any)

    def conjunction(self) -> Predicate:
        return self._joined("and", self.unary, all)

    def _joined(self, word: str, operand: Callable[[], Predicate], combine: Callable) -> Predicate:
        """`operand (word operand)*`, combined by any/all (short-circuiting, left to right)."""
        parts = [operand()]
        while self.peek() == word:
            self.take()
            parts.append(operand())
        if len(parts) == 1:
            return parts[0]
        return lambda entity: combine(part(entity) for part in parts)

    def unary(self) -> Predicate:
        if self.peek() == "not":
            self.take()
            inner = self.unary()
            return lambda e: not inner(e)
        if self.peek() == "(":
            self.take()
            inner = self.expression()
            self.take(")")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        left = self.take()
        operator = self.take()
        right = self.take()
        if operator[0] not in _COMPARISONS:
            raise InvalidInput(f"expected a comparison in filter {self.source!r}, found {operator[1]!r}")
        if left[0] == "name" and right[0] == "value":
            name, value, flip = left[1], right[1], False
        elif left[0] == "value" and right[0] == "name":
            name, value, flip = right[1], left[1], True
        else:
            raise InvalidInput(f"a comparison needs a property and a value in filter {self.source!r}")
        compare = _OPERATORS[operator[0]]

        def predicate(entity: Mapping[str, Any]) -> bool:
            if name not in entity:
                return False
            actual = entity[name]
            if actual is None or not _comparable(actual, value):
                return False
            return compare(value, actual) if flip else compare(actual, value)

        return predicate
