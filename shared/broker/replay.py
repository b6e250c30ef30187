"""How a replayed dead letter is named, the same for every adapter.

Replaying re-sends a message the broker has already seen, so under its original id duplicate detection would drop
it. A replay therefore gets a new id, `<original>~replay<n>`, and carries the replay count in an application
property; the body (and the idempotency key inside it) stays the same, so a consumer still delivers only once.
"""

from __future__ import annotations

import hashlib
import re

from shared.domain.messages import MAX_MESSAGE_ID

REPLAYS_PROPERTY = "crmflow_replays"
_SUFFIX = re.compile(r"~replay\d+$")


def replayed_message_id(message_id: str, replays: int) -> str:
    """`<original>~replay<n>`, shortened with a hash of the original when it would pass the id limit."""
    base = _SUFFIX.sub("", message_id)
    suffix = f"~replay{replays}"
    if len(base) + len(suffix) > MAX_MESSAGE_ID:
        digest = hashlib.sha256(base.encode()).hexdigest()[:16]
        base = base[: MAX_MESSAGE_ID - len(suffix) - len(digest) - 1] + "~" + digest
    return base + suffix


def original_message_id(message_id: str) -> str:
    """The id before any replay suffix (for `dlq replay --id` given either form)."""
    return _SUFFIX.sub("", message_id)
