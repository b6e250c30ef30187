"""The one key policy for every table: how a value becomes a PartitionKey or RowKey.

Table keys may not contain `/ \\ # ?` or control characters and are limited in length. Two forms, chosen by what a
value *is*, never by which store writes it:

- `readable_key(value)`: identifiers people look up (customer ids, firing and task dedupe keys, approval ids) are
  stored as themselves, so a row can be found in Storage Explorer; a value the table cannot hold (a forbidden
  character, too long) becomes `h` + its SHA-256, which never collides with another value. Customer ids and dedupe
  keys are validated upstream (no forbidden characters, ≤ 200 characters), so for them this is the identity:
  the rows written before this policy keep their keys.
- `digest(value)`: values that must not be stored in clear (addresses, mailbox and conversation names) and keys
  whose partition is spread by their hash (idempotency records): SHA-256 hex, never readable.

Partitions: `shard_partition(shard_of(id, shards))` for data a sweep reads shard by shard (customers, ledger),
`spread_partition(prefix, digest)` for rows spread evenly over 256 partitions (idempotency records).
"""

from __future__ import annotations

import hashlib
import unicodedata

MAX_READABLE_KEY = 200  # the customer-id limit; Table Storage allows 1 KiB, but readable keys stay short
FORBIDDEN_KEY_CHARS = frozenset("/\\#?")
HASHED_PREFIX = "h"


def is_valid_key(value: str) -> bool:
    """True when Table Storage accepts `value` as a key as it is (and it is short enough to stay readable)."""
    return (0 < len(value) <= MAX_READABLE_KEY and value.isprintable()
            and FORBIDDEN_KEY_CHARS.isdisjoint(value))


def digest(value: str) -> str:
    """SHA-256 hex of `value` (64 characters, always a valid key)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def normalise_address(address: str) -> str:
    """One spelling per mailbox: Unicode NFKC (full-width ＠ and letters), no surrounding space or angle brackets,
    lower case (domains are case-insensitive, and no mail system in use here has case-sensitive local parts)."""
    return unicodedata.normalize("NFKC", address).strip().strip("<>").strip().lower()


def email_digest(address: str) -> str:
    """Stable digest of a normalised address (suppression rows, audit rows, the directory cache, logs): never the
    address itself."""
    return digest(normalise_address(address))


def readable_key(value: str) -> str:
    """`value` itself when it is a valid key, else `h` + its digest."""
    return value if is_valid_key(value) else HASHED_PREFIX + digest(value)


def shard_of(identifier: str, shards: int) -> int:
    """Stable shard number of an id (same on every machine and Python version)."""
    number = hashlib.blake2b(identifier.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(number, "big") % shards


def shard_partition(shard: int) -> str:
    """PartitionKey of a shard: `s0000`, `s0001`, ..."""
    return f"s{shard:04d}"


def spread_partition(prefix: str, hashed: str) -> str:
    """One of 256 partitions (`<prefix>00`..`<prefix>ff`) taken from a digest's first two hex digits."""
    return f"{prefix}{hashed[:2]}"


def spread_partitions(prefix: str) -> tuple[str, ...]:
    """Every partition `spread_partition(prefix, ...)` can name (cleanup scans them one by one)."""
    return tuple(f"{prefix}{i:02x}" for i in range(256))
