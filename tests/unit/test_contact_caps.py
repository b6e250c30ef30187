"""Contact caps on the in-memory storage backend: competing promotional mails to one customer are ranked by priority,
the cap's worth go today, the rest arrive on the first day with room (seen by moving the broker's clock); racing
workers never push a customer over a cap; the policy file is checked with file:line errors."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from shared.broker.local import LocalBroker
from shared.contact import ContactGuard, ContactLog, PolicyProblems, load_contact_policy
from shared.contact.caps import ContactRequest
from shared.container import Container
from shared.domain.model import Customer
from shared.domain.names import EMAIL, OPPORTUNITIES
from shared.pipeline.sweep import ShardTask, evaluate_shard
from shared.storage.memory import MemoryStorage
from tests.conftest import make_settings
from tests.queues import drain

FIXTURES = Path(__file__).parent.parent / "fixtures" / "contact"
NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # Tuesday 10:00 in Tokyo: inside business hours
BY_PRIORITY = ["promo-summer", "promo-winter", "promo-newyear", "promo-spring", "promo-autumn"]


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> float:
        return self.now.timestamp()


def customer(customer_id: str = "C-100") -> Customer:
    return Customer.from_dict({
        "id": customer_id, "name": "Sample KK", "contact_name": "Taro", "email": "taro@example.co.jp",
        "owner": {"name": "Hanako", "email": "hanako@contoso.com"}, "locale": "en-US", "timezone": "Asia/Tokyo",
        "plan": "Basic", "contract_end": "2027-02-15", "contract_status": "active"})


@pytest.fixture
def capped(tmp_path) -> tuple[Container, Clock]:
    settings = make_settings(tmp_path, RULES_DIR=str(FIXTURES / "rules"), CONTACT_POLICY_FILE=str(
        FIXTURES / "policy.yaml"), CUSTOMER_SHARDS="1", UNSUBSCRIBE_SIGNING_KEY="k" * 32)
    container = Container(settings, storage=MemoryStorage())
    clock = Clock(NOW)
    container.broker = LocalBroker(tmp_path / "broker.sqlite3", clock=clock)
    container.customers.upsert_many([customer()])
    return container, clock


def sweep(container: Container):
    return evaluate_shard(container.customers, container.evaluator, container.planner, ShardTask(0, NOW))


def mails_visible(container: Container) -> list[str]:
    return [message.rule for message in drain(container.broker, EMAIL)]


def test_five_promotional_rules_give_exactly_the_cap_in_priority_order_and_the_rest_on_the_next_free_day(capped):
    container, clock = capped
    report = sweep(container)
    assert report.firings == 6

    # Today: the two highest priorities, and the transactional mail, which no cap holds back.
    assert sorted(mails_visible(container)) == sorted([*BY_PRIORITY[:2], "renewal-notice"])
    rows = {row["RowKey"].split(":")[0]: row for row in container.storage.snapshot()[OPPORTUNITIES]}
    capped_reasons = {rule: action["reason"] for rule, row in rows.items() for action in container.ledger.get(
        f"{row['PartitionKey']}~{row['RowKey']}").actions if action["status"] == "capped"}
    assert set(capped_reasons) == set(BY_PRIORITY[2:])
    assert capped_reasons["promo-newyear"] == "cap promotional email ≤ 2 per 7 days: deferred to 2026-12-08"
    assert capped_reasons["promo-autumn"] == "cap promotional email ≤ 2 per 7 days: deferred to 2026-12-31"

    # Nothing more during the week the 7-day cap is full.
    clock.now = NOW + timedelta(days=6)
    assert mails_visible(container) == []
    # Day 7, at the opening of business hours in Tokyo: the next two by priority.
    clock.now = datetime(2026, 12, 8, 0, 0, tzinfo=UTC)  # 09:00 Tokyo
    assert sorted(mails_visible(container)) == sorted(BY_PRIORITY[2:4])
    # The fifth waits until the 30-day cap has room (day 30 is the first day whose window leaves day 0 out).
    clock.now = datetime(2026, 12, 30, 9, 0, tzinfo=UTC)
    assert mails_visible(container) == []
    clock.now = datetime(2026, 12, 31, 0, 0, tzinfo=UTC)
    assert mails_visible(container) == [BY_PRIORITY[4]]
    assert [day for day, _, _ in container.contact_log.contacts("C-100")] == [
        date(2026, 12, 1), date(2026, 12, 1), date(2026, 12, 8), date(2026, 12, 8), date(2026, 12, 31)]


def test_a_rerun_or_replay_decides_the_same_and_counts_nothing_twice(capped):
    container, _ = capped
    customer_ = customer()
    firings = container.evaluator.evaluate(customer_, now=NOW, trigger="sweep")
    first = container.contact_guard.apply(customer_.id, firings)
    again = container.contact_guard.apply(customer_.id, list(reversed(firings)))  # a replay, in another order
    assert {f.rule_id: [a.status for a in f.actions] for f in first} == \
        {f.rule_id: [a.status for a in f.actions] for f in again}
    assert len(container.contact_log.contacts(customer_.id)) == 5  # 2 today, 2 deferred, 1 later (not 10)


def test_policy_drop_drops_the_losers_and_their_follow_ups(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text((FIXTURES / "policy.yaml").read_text().replace("when_capped: defer", "when_capped: drop"))
    settings = make_settings(tmp_path, RULES_DIR=str(FIXTURES / "rules"), CONTACT_POLICY_FILE=str(policy),
                             CUSTOMER_SHARDS="1")
    container = Container(settings, storage=MemoryStorage())
    firings = container.contact_guard.apply("C-100", container.evaluator.evaluate(customer(), now=NOW,
                                                                                  trigger="sweep"))
    statuses = {f.rule_id: [a.status for a in f.actions] for f in firings}
    assert [rule for rule in BY_PRIORITY if statuses[rule] == ["planned", "planned"]] == BY_PRIORITY[:2]
    assert all(statuses[rule] == ["capped", "capped"] for rule in BY_PRIORITY[2:])
    report = container.planner.plan([(customer(), f) for f in firings], NOW)
    assert report.by_status == Counter({"queued": 3, "capped": 3})


def test_two_racing_workers_never_exceed_a_cap(tmp_path):
    """Two workers (say a shard worker and a change event for the same customer) plan different promotional
    mails for one customer at the same moment: the contact log's compare-and-swap lets exactly the cap through."""
    policy = load_contact_policy(FIXTURES / "policy.yaml")
    storage = MemoryStorage()
    logs = [ContactLog(storage, policy), ContactLog(storage, policy)]
    today = date(2026, 12, 1)
    start = threading.Barrier(2)
    results: list[list] = [[], []]

    def worker(index: int) -> None:
        start.wait()
        for n in range(20):
            request = ContactRequest(f"w{index}-mail-{n}", "email", "promotional", today)
            results[index].extend(logs[index].reserve("C-100", [request]))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    decisions = results[0] + results[1]
    on_day = Counter(d.day for d in decisions if d.day)
    assert on_day[today] == 2  # exactly the 7-day cap today, whichever worker won each race
    contacts = sorted(d.day for d in decisions if d.day)
    for cap_days, limit in ((7, 2), (30, 4)):
        for start_day in {today + timedelta(days=k) for k in range(-30, 40)}:
            window = [d for d in contacts if start_day <= d < start_day + timedelta(days=cap_days)]
            assert len(window) <= limit, (cap_days, start_day, window)
    # What the log holds is what the workers were told (no lost update).
    assert sorted(day for day, _, _ in logs[0].contacts("C-100")) == contacts


def test_the_table_only_takes_a_write_when_its_row_is_unchanged(tmp_path):
    """The race the test above relies on, made deterministic: a worker whose read is stale loses its write and
    recomputes against the winner's row."""
    policy = load_contact_policy(FIXTURES / "policy.yaml")
    storage = MemoryStorage()
    log = ContactLog(storage, policy)
    today = date(2026, 12, 1)
    table = storage.table("ContactLog")
    real_get = table.get
    interfered = []

    def get_then_lose_the_race(partition, row, select=None):
        current = real_get(partition, row, select)
        if not interfered:  # between this worker's read and write, another worker takes both slots
            interfered.append(True)
            other = ContactLog(storage, policy)
            other.reserve("C-100", [ContactRequest(f"other-{n}", "email", "promotional", today) for n in range(2)])
        return current

    table.get = get_then_lose_the_race
    decision, = log.reserve("C-100", [ContactRequest("mine", "email", "promotional", today)])
    assert decision.day == date(2026, 12, 8) and decision.cap is not None


def test_the_policy_file_is_checked_with_file_line_and_key():
    with pytest.raises(PolicyProblems) as caught:
        load_contact_policy(FIXTURES / "bad_policy.yaml")
    text = caught.value.message
    assert "bad_policy.yaml:3" in text and "channel must be one of" in text
    assert "transactional contacts are never capped" in text and "limit must be a whole number" in text
    assert "bad_policy.yaml:7" in text and "when_capped must be defer or drop" in text
    assert "mode must be instant or digest" in text and "not an IANA time zone" in text


def test_no_policy_file_means_no_caps(tmp_path):
    policy = load_contact_policy(tmp_path / "missing.yaml")
    assert policy.caps == () and policy.caps_for("email", "promotional") == ()


def test_rule_category_and_priority_are_checked(tmp_path):
    from shared.rules import RuleProblems, load_ruleset

    rules = tmp_path / "rules"
    rules.mkdir()
    text = (FIXTURES / "rules" / "promotions.yaml").read_text()
    (rules / "r.yaml").write_text(text.replace("priority: 20", "priority: high", 1).replace(
        "category: transactional", "category: urgent"))
    with pytest.raises(RuleProblems) as caught:
        load_ruleset(rules, Path(__file__).parent.parent.parent / "templates")
    assert "r.yaml:4, rule 'promo-spring', field 'priority'" in caught.value.message
    assert "priority must be a whole number" in caught.value.message
    assert "category must be one of promotional, lifecycle, transactional" in caught.value.message
    ruleset = load_ruleset(FIXTURES / "rules", Path(__file__).parent.parent.parent / "templates")
    assert ruleset.rule("promo-summer").category == "promotional" and ruleset.rule("promo-summer").priority == 50
    assert ruleset.rule("renewal-notice").category == "transactional"
    assert replace(ruleset.rule("promo-summer"), category="lifecycle").category == "lifecycle"


def test_a_planning_batch_is_reserved_with_one_shard_read_and_batched_writes():
    policy = load_contact_policy(FIXTURES / "policy.yaml")
    storage = MemoryStorage()
    log = ContactLog(storage, policy, shards=1)
    today = date(2026, 12, 1)
    wanted = {f"C-{i:03d}": [ContactRequest(f"C-{i:03d}-mail-{n}", "email", "promotional", today) for n in range(3)]
              for i in range(30)}
    decided = log.reserve_many(wanted)
    assert log.operations == 2  # the shard's rows read once, one transaction writing all 30 rows
    for customer_id, decisions in decided.items():
        assert [d.day for d in decisions] == [today, today, date(2026, 12, 8)], customer_id
        assert [day for day, _, _ in log.contacts(customer_id)] == [today, today, date(2026, 12, 8)]
    # Planned again (a redelivered shard): the same decisions, nothing counted twice.
    assert log.reserve_many(wanted) == decided
    assert all(len(log.contacts(c)) == 3 for c in wanted)


def test_a_batch_whose_rows_changed_since_its_read_is_redone_one_by_one():
    """Worker A read the shard's rows; worker B then took both of today's slots for every customer; A's batched
    write is refused (the rows' ETags changed) and A decides each customer again against B's rows."""
    policy = load_contact_policy(FIXTURES / "policy.yaml")
    storage = MemoryStorage()
    a, b = ContactLog(storage, policy, shards=1), ContactLog(storage, policy, shards=1)
    today = date(2026, 12, 1)
    customers = [f"C-{i:03d}" for i in range(12)]
    a.reserve_many({c: [ContactRequest(f"{c}-seed", "teams", "promotional", today)] for c in customers})
    a._shard_rows["s0000"] = (a._shard_rows["s0000"][0], {row["RowKey"]: row for row in storage.table(
        "ContactLog").partition("s0000")})  # A's view: the rows as they are now
    b.reserve_many({c: [ContactRequest(f"{c}-b-{n}", "email", "promotional", today) for n in range(2)]
                    for c in customers})
    decided = a.reserve_many({c: [ContactRequest(f"{c}-a", "email", "promotional", today)] for c in customers})
    for customer_id in customers:
        [mine] = decided[customer_id]
        assert mine.day == date(2026, 12, 8) and mine.capped  # today was full: B's two mails took it
        email_days = sorted(day for day, channel, _ in a.contacts(customer_id) if channel == "email")
        assert email_days == [today, today, date(2026, 12, 8)]


def test_fit_empty_log_says_exactly_when_a_fresh_log_would_reserve_everything_today():
    # fit_empty_log lets the dry-run skip writing the log; it must agree with a real reservation on an empty row.
    policy = load_contact_policy(FIXTURES / "policy.yaml")  # promotional email: ≤ 2 per 7 days, ≤ 4 per 30
    guard = ContactGuard(policy, ContactLog(MemoryStorage(), policy), lambda rule_id: None)
    today = date(2026, 12, 1)
    kinds = [("email", "promotional"), ("email", "lifecycle"), ("teams", "promotional"),
             ("email", "transactional")]
    outcomes = Counter()
    for size in range(6):
        for picks in itertools.product(range(len(kinds)), repeat=size):
            requests = [ContactRequest(f"k{i}", *kinds[pick], today) for i, pick in enumerate(picks)]
            fresh = ContactLog(MemoryStorage(), policy)
            decisions = fresh.reserve("C-1", requests)
            all_today = all(d.day == today and not d.capped for d in decisions)
            assert guard.fit_empty_log(requests) == all_today, picks
            outcomes[all_today] += 1
    assert outcomes[True] and outcomes[False]  # both answers were put to the test
    later = [ContactRequest("a", "email", "promotional", today),
             ContactRequest("b", "email", "promotional", today + timedelta(days=1))]
    assert not guard.fit_empty_log(later)  # only one evaluation's requests (one local date) are judged
