"""The sender over real HTTP against the Graph, Bot Connector, token and webhook stand-ins, with injected faults.

Every test ends by counting what the stand-in received: exactly one mail or card per dedupe key, or none."""

from __future__ import annotations

import itertools
from email import message_from_bytes
from email.policy import default

import pytest

from shared.delivery.idempotency import TableDedupeStore
from shared.delivery.transports import DEDUPE_PROPERTY
from shared.domain.model import Customer
from shared.domain.names import DELIVERIES, EMAIL, TEAMS
from shared.domain.vocabulary import DeliveryStatus
from tests.delivery_support import CUSTOMER_EMAIL, REP, REP_OBJECT_ID, action, live_stack
from tests.standins import Fault


@pytest.fixture
def stack(azurite, tmp_path):
    with live_stack(azurite, tmp_path) as built:
        yield built


def deliver(stack, message):
    return stack.container.delivery.deliver(message)


def redeliver_due(stack, queue=EMAIL, advance=3600.0):
    """Advance the clock past any backoff and hand every due copy to the sender again."""
    stack.clock.advance(advance)
    return [deliver(stack, copy) for copy in stack.due(queue)]


def test_mail_goes_out_once_stamped_with_alternatives_and_releases_followups(stack):
    fyi = action("teams", key="renewal:C-001:90:fyi", to=REP)
    outcome = deliver(stack, action(followups=(fyi.to_json(),)))
    assert outcome.status == DeliveryStatus.SENT and outcome.transport == "graph"
    [mail] = stack.graph.sent()
    assert mail.properties[DEDUPE_PROPERTY] == "renewal:C-001:90"
    parsed = message_from_bytes(mail.mime, policy=default)
    assert parsed.get_content_type() == "multipart/alternative" and parsed["To"] == CUSTOMER_EMAIL
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [m.dedupe_key for m in stack.due(TEAMS)] == ["renewal:C-001:90:fyi"]
    audit = [row for row in stack.container.tables.table(DELIVERIES).list_entities()
             if row["PartitionKey"].startswith("audit-")]
    assert [row["status"] for row in audit] == [DeliveryStatus.SENT]
    assert all(CUSTOMER_EMAIL not in str(value) for row in audit for value in row.values())


def test_a_redelivered_message_is_acknowledged_without_a_second_mail(stack):
    fyi = action("teams", key="renewal:C-001:90:fyi", to=REP)
    message = action(followups=(fyi.to_json(),))
    assert deliver(stack, message).status == DeliveryStatus.SENT
    assert deliver(stack, message).status == DeliveryStatus.DUPLICATE
    assert len(stack.graph.sent()) == 1
    assert len(stack.due(TEAMS)) == 1  # the follow-up was published twice; the broker dropped the repeat


def test_expired_token_is_refreshed_once(stack):
    deliver(stack, action(key="k1"))
    stack.issuer.expire_all()
    assert deliver(stack, action(key="k2")).status == DeliveryStatus.SENT
    assert stack.token.calls("token") == 2 and len(stack.graph.sent()) == 2


def test_503_backs_off_with_jitter_and_then_sends_once(stack):
    stack.graph.inject("send", Fault(status=503))
    first = deliver(stack, action())
    assert first.status == DeliveryStatus.RESCHEDULED and "503" in first.reason
    delay = first.retry_at.timestamp() - stack.clock()
    assert 0.9 <= delay <= 2.1  # base 2 s, equal jitter
    assert [o.status for o in redeliver_due(stack)] == [DeliveryStatus.SENT]
    assert len(stack.graph.sent()) == 1 and not stack.graph.drafts()  # the stamped draft was found and sent


def test_lost_response_after_the_mail_went_out_is_found_in_sent_items(stack):
    stack.graph.inject("send", Fault(kind="reset_after"))  # Graph sent it; the client saw a reset
    assert deliver(stack, action()).status == DeliveryStatus.RESCHEDULED
    [again] = redeliver_due(stack)
    assert again.status == DeliveryStatus.SENT
    assert len(stack.graph.sent()) == 1  # not sent twice
    assert stack.graph.calls("query") >= 1 and stack.graph.calls("create") == 1
    record = TableDedupeStore(stack.container.storage).get("renewal:C-001:90")
    assert record.result["found_existing"] is True


def test_timeouts_and_resets_are_retried_until_one_mail_is_sent(stack):
    stack.graph.inject("create", Fault(kind="timeout", delay=1.5), Fault(kind="reset"))
    assert deliver(stack, action()).status == DeliveryStatus.RESCHEDULED
    assert [o.status for o in redeliver_due(stack)] == [DeliveryStatus.RESCHEDULED]
    assert [o.status for o in redeliver_due(stack)] == [DeliveryStatus.SENT]
    assert len(stack.graph.sent()) == 1


def test_429_is_honoured_through_the_shared_limiter(stack):
    stack.graph.inject("send", Fault(status=429, headers={"Retry-After": "7"}))
    before = stack.clock()  # the 429 came after this: its Retry-After ends 7 s after it at the earliest
    outcome = deliver(stack, action())
    assert outcome.status == DeliveryStatus.RESCHEDULED
    assert outcome.retry_at.timestamp() - before >= 6.99
    # Another message for the same mailbox may not take a slot before Retry-After either.
    other = deliver(stack, action(key="other"))
    assert other.status == DeliveryStatus.RESCHEDULED and other.retry_at.timestamp() - before >= 6.99
    stack.clock.advance(8)
    assert sorted(o.status for o in (deliver(stack, m) for m in stack.due(EMAIL))) == [DeliveryStatus.SENT] * 2
    assert len(stack.graph.sent()) == 2


def test_mailbox_pacing_reserves_distinct_slots(azurite, tmp_path):
    with live_stack(azurite, tmp_path, MAIL_MESSAGES_PER_MINUTE="3") as stack:
        outcomes = [deliver(stack, action(key=f"k{i}")) for i in range(4)]
        assert [o.status for o in outcomes] == [DeliveryStatus.SENT] + [DeliveryStatus.RESCHEDULED] * 3
        slots = [o.retry_at.timestamp() for o in outcomes[1:]]
        assert all(20.0 < b - a < 21.0 for a, b in itertools.pairwise(slots))  # 60/3 s, with headroom
        stack.clock.advance(21)
        assert [o.status for o in (deliver(stack, m) for m in stack.due(EMAIL))] == [DeliveryStatus.SENT]
        assert len(stack.graph.sent()) == 2


def test_permanent_4xx_is_recorded_failed_and_not_retried(stack):
    stack.graph.inject("create", Fault(status=413))
    outcome = deliver(stack, action())
    assert outcome.status == DeliveryStatus.FAILED and "413" in outcome.reason
    assert deliver(stack, action()).status == DeliveryStatus.FAILED  # a redelivery is acknowledged, not retried
    assert not stack.graph.sent() and stack.graph.calls("create") == 1


def test_suppressed_customer_is_not_mailed_even_after_planning(stack):
    stack.container.suppressions.add_customer("C-001", "one-click")
    assert deliver(stack, action()).status == DeliveryStatus.OPTED_OUT
    assert not stack.graph.sent()


def test_customer_flag_opt_out_is_checked_at_send_time(stack):
    stack.container.customers.upsert_many([Customer.from_dict({"id": "C-001", "email_opt_out": True})])
    assert deliver(stack, action()).status == DeliveryStatus.OPTED_OUT
    assert stack.graph.calls("create") == 0


def test_teams_rep_lookup_conversation_cache_and_activity(stack):
    first = deliver(stack, action("teams", key="xsell:C-001", to=REP))
    second = deliver(stack, action("teams", key="xsell:C-002", to=REP))
    assert first.status == DeliveryStatus.SENT and second.status == DeliveryStatus.SENT
    assert stack.graph.calls("user") == 1  # the object id was cached
    assert stack.bot.calls("conversations") == 1  # the conversation was cached
    [(conversation, activity), _] = stack.bot.activities
    assert stack.bot.conversations[conversation] == REP_OBJECT_ID
    assert activity["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert stack.token.calls("token") == 2  # a Graph token and a Bot Framework token


def test_teams_channel_goes_through_the_workflows_webhook(stack):
    assert deliver(stack, action("teams", key="alert:1", to="channel:sales")).status == DeliveryStatus.SENT
    [post] = stack.webhook.posts["sales"]
    assert post["type"] == "message"
    unknown = deliver(stack, action("teams", key="alert:2", to="channel:nowhere"))
    assert unknown.status == DeliveryStatus.FAILED and "nowhere" in unknown.reason


def test_bot_not_installed_for_the_rep_fails_with_the_reason(stack):
    stack.bot.installed_for = set()
    outcome = deliver(stack, action("teams", key="xsell:C-001", to=REP))
    assert outcome.status == DeliveryStatus.FAILED and "403" in outcome.reason
    assert not stack.bot.activities
