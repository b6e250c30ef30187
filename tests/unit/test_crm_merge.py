"""apply_event: partial updates, out-of-order events, deals → purchases, deletes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from shared.crm.merge import VERSIONS_KEY, apply_event, customer_id_of
from shared.domain.errors import InvalidInput
from shared.domain.events import CrmEvent
from shared.domain.model import Customer

T0 = datetime(2025, 11, 22, 8, 0, tzinfo=UTC)


def event(record, *, at=T0, entity="customer", operation="update", record_id="C-1", **kw) -> CrmEvent:
    return CrmEvent(source="hubspot", entity=entity, record_id=record_id, operation=operation,
                    event_id=f"e-{at.timestamp()}", occurred_at=at, record=record, **kw)


def stored(**fields) -> Customer:
    return Customer.from_dict({"id": "C-1", "email": "old@example.com", "plan": "Basic", **fields})


def test_partial_update_changes_only_the_fields_sent():
    after = apply_event(stored(name="株式会社サンプル"), event({"id": "C-1", "email": "new@example.com"}))
    assert after.email == "new@example.com" and after.plan == "Basic" and after.name == "株式会社サンプル"
    assert after.updated_at == T0


def test_an_older_event_never_overwrites_newer_data():
    newer = apply_event(stored(), event({"id": "C-1", "email": "new@example.com"}, at=T0))
    late = apply_event(newer, event({"id": "C-1", "email": "stale@example.com"}, at=T0 - timedelta(minutes=1)))
    assert late.email == "new@example.com" and late.updated_at == T0


def test_an_older_event_on_another_field_still_applies():
    # HubSpot sends one event per property; they may arrive in any order.
    first = apply_event(stored(), event({"id": "C-1", "email": "new@example.com"}, at=T0))
    second = apply_event(first, event({"id": "C-1", "plan": "Premium"}, at=T0 - timedelta(seconds=5)))
    assert (second.email, second.plan) == ("new@example.com", "Premium")
    assert second.custom[VERSIONS_KEY]["plan"] == (T0 - timedelta(seconds=5)).isoformat()


def test_imported_record_newer_than_event_wins():
    imported = stored(updated_at="2025-12-01T00:00:00+00:00")
    assert apply_event(imported, event({"id": "C-1", "email": "x@example.com"})).email == "old@example.com"


def test_nested_fields_merge_by_key_and_a_new_owner_replaces_the_old():
    current = stored(usage={"reports": 1, "logins": 5},
                     owner={"name": "A", "email": "a@contoso.com", "aad_object_id": "oid-a"})
    after = apply_event(current, event({"id": "C-1", "usage": {"reports": 9},
                                        "owner": {"name": "B", "email": "b@contoso.com", "aad_object_id": None}}))
    assert dict(after.usage) == {"reports": 9, "logins": 5}
    assert after.owner.email == "b@contoso.com" and after.owner.aad_object_id is None


def test_first_event_creates_the_customer_and_delete_removes_it():
    created = apply_event(None, event({"id": "C-1", "email": "new@example.com"}, operation="create"))
    assert created.id == "C-1" and created.email == "new@example.com"
    assert apply_event(created, event({"id": "C-1"}, operation="delete", at=T0 + timedelta(seconds=1))) is None
    assert apply_event(None, event({"id": "C-1"}, operation="delete")) is None


def test_a_delete_older_than_the_latest_update_is_ignored():
    current = apply_event(stored(), event({"id": "C-1", "plan": "Premium"}, at=T0))
    assert apply_event(current, event({"id": "C-1"}, operation="delete", at=T0 - timedelta(hours=1))) == current


def won_deal(at=T0, stage="won", product="B", amount=500000):
    return event({"customer_id": "C-1", "deal": {"id": "D-9", "stage": stage, "amount": amount,
                                                 "closed_on": "2025-11-21"},
                  "purchase": {"product": product} if product else None},
                 entity="deal", record_id="D-9", at=at)


def test_a_won_deal_becomes_a_purchase():
    current = stored(products=["A"], purchases=[{"product": "A", "date": "2025-03-01", "amount": 100000}])
    after = apply_event(current, won_deal())
    assert [d.id for d in after.deals] == ["D-9"] and after.deals[0].stage == "won"
    assert after.products == ("A", "B")
    assert [(p.product, p.deal_id, p.amount) for p in after.purchases] == [("A", None, 100000), ("B", "D-9", 500000)]
    assert after.last_purchase_date == date(2025, 11, 21)
    assert after.annual_spend == 600000


def test_a_redelivered_deal_event_changes_nothing_and_reopening_removes_the_purchase():
    once = apply_event(stored(), won_deal())
    assert apply_event(once, won_deal()) == once
    reopened = apply_event(once, won_deal(at=T0 + timedelta(hours=1), stage="open", product=None))
    assert reopened.purchases == () and reopened.deals[0].stage == "open" and reopened.annual_spend == 0
    stale = apply_event(reopened, won_deal(at=T0 - timedelta(hours=1)))
    assert stale.deals[0].stage == "open"  # an older "won" does not undo the newer "open"


def test_deal_for_an_unknown_customer_creates_a_bare_customer_and_deal_delete():
    bare = apply_event(None, won_deal())
    assert bare.id == "C-1" and bare.products == ("B",)
    gone = apply_event(bare, event({"customer_id": "C-1", "deal": {"id": "D-9"}}, entity="deal", record_id="D-9",
                                   operation="delete", at=T0 + timedelta(minutes=1)))
    assert gone.deals == () and gone.purchases == ()


def test_deal_without_customer_is_refused_and_customer_id_of():
    orphan = event({"deal": {"id": "D-1", "stage": "won"}}, entity="deal", record_id="D-1")
    assert customer_id_of(orphan) is None
    with pytest.raises(InvalidInput):
        apply_event(None, orphan)
    assert customer_id_of(won_deal()) == "C-1"
    assert customer_id_of(event({"id": "C-7"})) == "C-7"
    assert customer_id_of(orphan, {"customer_id": "C-3", "deal": {"id": "D-1"}}) == "C-3"


def test_refetched_record_is_applied_in_full():
    stripped = event({"id": "C-1"}, needs_refetch=True)
    after = apply_event(stored(), stripped, refetched={"id": "C-1", "email": "fresh@example.com", "plan": "Premium"})
    assert (after.email, after.plan) == ("fresh@example.com", "Premium")
    assert after.custom[VERSIONS_KEY]["*"] == T0.isoformat()


def test_bad_values_are_invalid_input():
    with pytest.raises(InvalidInput):
        apply_event(stored(), event({"id": "C-1", "birthday": "tomorrow"}))


def test_customer_event_deals_merge_by_id_field_by_field():
    def event(deals, at):
        return CrmEvent(source="generic", entity="customer", record_id="C-M", operation="update", event_id=at,
                     occurred_at=datetime.fromisoformat(at), record={"id": "C-M", "deals": deals})

    first = apply_event(None, event([{"id": "D-1", "type": "subscription_new", "stage": "open"},
                               {"id": "D-2", "type": "one_time", "stage": "open"}], "2026-01-01T00:00:00+00:00"))
    won = apply_event(first, event([{"id": "D-1", "stage": "won"}], "2026-01-03T00:00:00+00:00"))
    assert [(d.id, d.type, d.stage) for d in won.deals] == [("D-1", "subscription_new", "won"),
                                                           ("D-2", "one_time", "open")]
    late = apply_event(won, event([{"id": "D-1", "stage": "open"}, {"id": "D-3", "stage": "open"}],
                            "2026-01-02T00:00:00+00:00"))
    assert [(d.id, d.stage) for d in late.deals] == [("D-1", "won"), ("D-2", "open"), ("D-3", "open")]
