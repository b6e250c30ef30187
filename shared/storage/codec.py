"""Table Storage limits, and values larger than one string property may hold.

A JSON value is stored as text in `<name>`, continued in `<name>_1`, `<name>_2`, ... when it is longer than
`MAX_STRING_CHARS` (a string property holds 64 KiB, stored as UTF-16). Readers join the parts back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

BATCH_LIMIT = 100  # operations per transaction, all of one partition
MAX_ENTITY_BYTES = 1024 * 1024  # one entity, per the service's size formula (`entity_size`)
MAX_PROPERTY_BYTES = 64 * 1024  # one string or binary property
MAX_STRING_CHARS = MAX_PROPERTY_BYTES // 2  # strings are stored as UTF-16
MAX_PROPERTIES = 252  # custom properties per entity (255 with PartitionKey, RowKey and Timestamp)
MAX_KEY_CHARS = 512  # PartitionKey / RowKey: 1 KiB of UTF-16
MAX_BATCH_BYTES = 4 * 1024 * 1024  # one transaction's payload


def entity_size(entity: Mapping[str, Any]) -> int:
    """Bytes an entity takes against the 1 MiB limit, per the Table service's documented formula."""
    size = 4
    for key, value in entity.items():
        if key in ("PartitionKey", "RowKey"):
            size += len(value) * 2
            continue
        size += 8 + len(key) * 2
        if isinstance(value, str):
            size += 4 + len(value) * 2
        elif isinstance(value, bytes):
            size += 4 + len(value)
        elif isinstance(value, bool):
            size += 1
        else:
            size += 8
    return size


def chunk_names(name: str, parts: int) -> list[str]:
    """`name`, `name_1`, ... for a value split in `parts` pieces."""
    return [name if index == 0 else f"{name}_{index}" for index in range(parts)]


def chunk_text(name: str, text: str) -> dict[str, str]:
    """`text` as properties `name`, `name_1`, ... of at most MAX_STRING_CHARS each ({} for empty text)."""
    pieces = [text[start:start + MAX_STRING_CHARS] for start in range(0, len(text), MAX_STRING_CHARS)]
    return dict(zip(chunk_names(name, len(pieces)), pieces, strict=True))


def put_json(name: str, value: Any) -> dict[str, str]:
    """`value` as compact JSON text in as many properties as it needs ({} for an empty value)."""
    if value is None or value == [] or value == {}:
        return {}
    return chunk_text(name, json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def blank_json(name: str, value: Any) -> dict[str, str]:
    """Empty strings over every property `put_json(name, value)` used (a merge cannot remove properties)."""
    return dict.fromkeys(put_json(name, value), "")


def join_text(entity: Mapping[str, Any], name: str) -> str | None:
    """The text `chunk_text` split, joined back; None when the entity has none (or only blanked parts)."""
    first = entity.get(name)
    if not first:
        return None
    parts = [first]
    index = 1
    while part := entity.get(f"{name}_{index}"):
        parts.append(part)
        index += 1
    return "".join(parts)


def get_json(entity: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """The value `put_json` stored under `name`, or `default`."""
    text = join_text(entity, name)
    return default if text is None else json.loads(text)
