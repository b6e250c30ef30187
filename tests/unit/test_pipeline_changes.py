"""Which change events are re-read from their CRM before merging (the decision lives in the domain)."""

from __future__ import annotations

import pytest

from shared.domain.errors import InvalidInput
from shared.domain.events import CrmEvent
from shared.pipeline.changes import refetched_record


def event(source: str, needs_refetch: bool) -> CrmEvent:
    return CrmEvent(source=source, entity="contact", record_id="r-1", operation="update", event_id="e-1",
                    record={"id": "r-1"}, needs_refetch=needs_refetch)


def test_complete_events_are_not_re_read():
    calls = []
    assert refetched_record(event("dataverse", False), {"dataverse": calls.append}) is None and calls == []


def test_a_stripped_event_is_re_read_by_its_own_crm():
    fetchers = {"dataverse": lambda e: {"id": e.record_id, "email": "taro@example.co.jp"},
                "zoho": lambda e: pytest.fail("another CRM's client was asked")}
    assert refetched_record(event("dataverse", True), fetchers) == {"id": "r-1", "email": "taro@example.co.jp"}


def test_a_crm_that_cannot_be_re_read_here_is_bad_input_not_a_retry():
    with pytest.raises(InvalidInput, match="zoho sent a stripped record"):
        refetched_record(event("zoho", True), {"dataverse": lambda e: {}})
