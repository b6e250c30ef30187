"""Rep digests on the in-memory storage backend and the local broker with a controllable clock: one card per rep
per working day at the start of the rep's day in the rep's zone, exactly once under redelivery, `importance: high`
at once but never outside working hours, later opportunities in the next day's digest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.broker.local import LocalBroker
from shared.container import Container
from shared.domain.model import Customer
from shared.domain.names import TEAMS
from shared.pipeline.sweep import ShardTask, evaluate_shard
from shared.storage.memory import MemoryStorage
from tests.conftest import make_settings
from tests.queues import drain

FIXTURES = Path(__file__).parent.parent / "fixtures" / "digest"
NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # Tuesday 10:00 in Tokyo; Monday 20:00 in New York
TOKYO_REP, NY_REP = "hanako@contoso.com", "ny.rep@contoso.com"


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> float:
        return self.now.timestamp()


def customer(customer_id: str, owner: str, spend: int) -> Customer:
    return Customer.from_dict({"id": customer_id, "name": f"Company {customer_id}", "email": "a@example.com",
                               "owner": {"name": "Rep", "email": owner}, "locale": "en-US",
                               "timezone": "Asia/Tokyo", "annual_spend": spend})


@pytest.fixture
def reps(tmp_path) -> tuple[Container, Clock]:
    settings = make_settings(tmp_path, RULES_DIR=str(FIXTURES / "rules"), CONTACT_POLICY_FILE=str(
        FIXTURES / "policy.yaml"), CUSTOMER_SHARDS="1")
    container = Container(settings, storage=MemoryStorage())
    clock = Clock(NOW)
    container.clock = clock
    container.broker = LocalBroker(tmp_path / "broker.sqlite3", clock=clock)
    container.customers.upsert_many([customer("C-1", TOKYO_REP, 100), customer("C-2", TOKYO_REP, 900),
                                     customer("C-3", NY_REP, 500)])
    return container, clock


def sweep(container: Container, now: datetime = NOW):
    return evaluate_shard(container.customers, container.evaluator, container.planner, ShardTask(0, now))


def visible_cards(container: Container):
    return drain(container.broker, TEAMS)


def outbox_cards(container: Container) -> list[dict]:
    folder = container.settings.local_dir / "outbox" / "teams"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []


def test_one_digest_per_rep_per_day_even_when_redelivered(reps):
    container, _ = reps
    report = sweep(container)
    assert report.firings == 36  # 12 opportunities for each of 3 customers
    cards = visible_cards(container)
    tokyo = [m for m in cards if m.to == TOKYO_REP]
    # The Tokyo rep is in working hours: the digest is due now, and the high-importance cards go at once.
    assert sorted(m.kind for m in tokyo) == ["cross_sell", "cross_sell", "digest"]
    assert all(m.to != NY_REP for m in cards)  # 20:00 in New York: nothing for that rep now
    digest = next(m for m in tokyo if m.kind == "digest")
    first = container.delivery.deliver(digest)
    again = container.delivery.deliver(digest)  # the broker redelivers it
    assert (first.status, again.status) == ("sent", "duplicate")
    sent = [c for c in outbox_cards(container) if c["dedupe_key"] == digest.dedupe_key]
    assert len(sent) == 1
    body = sent[0]["payload"]["attachments"][0]["content"]["body"]
    texts = [block["text"] for block in body]
    assert texts[0].startswith("22 new opportunities")  # 2 customers x 11 (the high ones went at once)
    # By priority, then amount: priority 9 (opp-03) for the bigger customer first.
    assert [t.split(" ([CRM]")[0] for t in texts[1:4]] == [
        "**Company C-2** · 900: offer 03", "**Company C-2** · 900: offer 07", "**Company C-2** · 900: offer 11"]
    assert texts[-1] == "and 12 more"
    action = sent[0]["payload"]["attachments"][0]["content"]["actions"][0]
    assert action["url"].endswith("/api/dashboard")


def test_a_new_york_rep_gets_the_digest_at_their_morning_not_tokyos(reps):
    container, clock = reps
    sweep(container)
    visible_cards(container)  # the Tokyo rep's
    clock.now = datetime(2026, 12, 1, 13, 59, tzinfo=UTC)  # 08:59 in New York
    assert visible_cards(container) == []
    clock.now = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)  # 09:00 EST
    cards = visible_cards(container)
    assert sorted(m.kind for m in cards) == ["cross_sell", "digest"] and {m.to for m in cards} == {NY_REP}
    digest = next(m for m in cards if m.kind == "digest")
    assert digest.not_before == clock.now and digest.properties["digest_day"] == "2026-12-01"


def test_opportunities_after_the_digest_went_out_wait_for_the_next_working_day(reps):
    container, clock = reps
    sweep(container)
    digest = next(m for m in visible_cards(container) if m.kind == "digest")
    container.delivery.deliver(digest)
    late = customer("C-4", TOKYO_REP, 50)
    container.customers.upsert_many([late])
    clock.now = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)  # Friday 17:00 in Tokyo: Friday's digest is due now
    sweep(container, clock.now)
    later = [m for m in visible_cards(container) if m.to == TOKYO_REP and m.kind == "digest"]
    assert [m.properties["digest_day"] for m in later] == ["2026-12-04"]
    clock.now = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)  # Friday 18:30: outside hours, Monday's digest
    container.customers.upsert_many([customer("C-5", TOKYO_REP, 50)])
    sweep(container, clock.now)
    assert visible_cards(container) == []
    clock.now = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)  # Monday 09:00 in Tokyo
    assert [m.properties["digest_day"] for m in visible_cards(container) if m.kind == "digest"] == ["2026-12-07"]


def test_a_rep_in_instant_mode_gets_every_card_as_it_comes(tmp_path, reps):
    container, _ = reps
    policy = tmp_path / "policy.yaml"
    policy.write_text((FIXTURES / "policy.yaml").read_text().replace(
        "{timezone: America/New_York}", "{mode: instant, timezone: America/New_York}"))
    container.settings = container.settings.replace(contact_policy_file=policy)
    sweep(container)
    ny = [m for m in visible_cards(container) if m.to == NY_REP]
    assert len(ny) == 12 and {m.kind for m in ny} == {"cross_sell"}  # one card per opportunity, no digest


def test_cleanup_deletes_digests_of_past_days(reps):
    from shared.ops.cleanup import purge_deliveries

    container, _ = reps
    sweep(container)
    rows = container.storage.snapshot()["Digests"]
    assert len(rows) == 2  # the Tokyo rep's and the New York rep's
    assert purge_deliveries(container.storage, NOW + timedelta(days=3), 400).digests == 0
    assert purge_deliveries(container.storage, NOW + timedelta(days=8), 400).digests == 2
    assert container.storage.snapshot()["Digests"] == []


def test_the_note_that_a_mail_was_sent_joins_the_reps_next_open_digest(tmp_path, reps):
    container, clock = reps
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mail.yaml").write_text(
        "- id: welcome-mail\n  kind: lifecycle\n  on: [sweep]\n  when: \"true\"\n  once: ever\n  actions:\n"
        "    - email: customer\n      template: birthday\n    - teams: owner\n      template: email_sent\n"
        "      after: email\n", encoding="utf-8")
    container.settings = container.settings.replace(rules_dir=rules, unsubscribe_signing_key="k" * 32)
    sweep(container)
    mails = drain(container.broker, "email")
    assert len(mails) == 3 and visible_cards(container) == []  # the notes wait for the mails
    clock.now = NOW.replace(hour=2)
    for mail in mails:
        assert container.delivery.deliver(mail).status == "sent"
    cards = visible_cards(container)
    # Tokyo rep: one digest for both notes (today's is still open); the New York rep's waits for their morning.
    assert [(m.kind, m.to) for m in cards] == [("digest", TOKYO_REP)]
    assert container.delivery.deliver(cards[0]).status == "sent"
    card = next(c for c in outbox_cards(container) if c["dedupe_key"] == cards[0].dedupe_key)
    assert card["payload"]["attachments"][0]["content"]["body"][0]["text"].startswith("2 new opportunities")
