"""Queue message envelopes survive a JSON round trip exactly."""

from datetime import UTC, datetime

import pytest

from shared.domain.errors import InvalidInput
from shared.domain.events import CrmEvent
from shared.domain.messages import ActionMessage


def test_action_message_round_trip_with_followups():
    fyi = ActionMessage("k1#1", "teams", "r", "lifecycle", "C-1", "rep@contoso.com", "FYI", {"card": {}},
                        datetime(2026, 11, 22, tzinfo=UTC), after="k1#0")
    mail = ActionMessage("k1#0", "email", "r", "lifecycle", "C-1", "c@example.com", "件名", {"html": "<p>x</p>"},
                         datetime(2026, 11, 22, tzinfo=UTC), not_before=datetime(2026, 11, 23, 0, tzinfo=UTC),
                         followups=(fyi.to_json(),))
    back = ActionMessage.from_json(mail.to_json())
    assert back == mail and ActionMessage.from_json(back.followups[0]) == fyi


def test_action_message_key_limit_and_garbage():
    with pytest.raises(InvalidInput, match="dedupe_key"):
        ActionMessage("x" * 129, "teams", "r", "k", "C", "to", None, {}, datetime.now(UTC))
    with pytest.raises(InvalidInput):
        ActionMessage.from_json('{"channel": "teams"}')


def test_crm_event_round_trip():
    event = CrmEvent("hubspot", "contact", "123", "update", "evt-1", datetime(2026, 1, 1, tzinfo=UTC),
                     ("email",), {"id": "123", "email": "x@example.com"})
    assert CrmEvent.from_json(event.to_json()) == event
