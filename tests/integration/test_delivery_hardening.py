"""Delivery against Azurite and the Graph stand-in: raw list headers, address suppression, no mail without an
unsubscribe link, and no double send while an accepted mail still sits in the Outbox."""

from __future__ import annotations

import contextlib
import re
import time
from email import message_from_bytes
from email.policy import default

import pytest

from shared.delivery.service import NO_UNSUBSCRIBE_LINK
from shared.delivery.transports import OutboxTransport
from shared.delivery.unsubscribe import unsubscribe
from shared.domain.model import Customer
from shared.domain.names import EMAIL
from shared.domain.signing import UNSUBSCRIBE, sign, unsubscribe_url
from shared.domain.vocabulary import DeliveryStatus
from tests.delivery_support import CUSTOMER_EMAIL, MAILBOX, action, live_stack
from tests.standins import Fault

RAW_LIST_UNSUBSCRIBE = re.compile(rb"^List-Unsubscribe: <(https?://[^>\s]+)>\r$", re.MULTILINE)


@contextlib.contextmanager
def patient_stack(azurite, tmp_path):
    """The live stack with generous HTTP timeouts: these tests inject their faults, a slow machine must not."""
    with live_stack(azurite, tmp_path, MAIL_SEND_SETTLE_SECONDS="30") as built:
        built.container.__dict__["http_timeout"] = (10.0, 20.0)
        yield built


@pytest.fixture
def stack(azurite, tmp_path):
    with patient_stack(azurite, tmp_path) as built:
        yield built


def deliver(stack, message):
    return stack.container.delivery.deliver(message)


def deliver_until_settled(stack, message):
    """Deliver, and redeliver the scheduled copy while it is only paced (a slow machine may pace a first send)."""
    outcome = deliver(stack, message)
    while outcome.status == DeliveryStatus.RESCHEDULED and outcome.reason == "rate limit":
        stack.clock.advance(5)
        [message] = stack.due(EMAIL)
        outcome = deliver(stack, message)
    return outcome


def long_link(stack) -> str:
    return unsubscribe_url(stack.container.settings, "C-001-with-a-long-crm-record-identifier-0123456789")


def assert_one_click_headers(raw: bytes, link: str) -> None:
    """RFC 2369/8058: the header holds the raw `<http(s)://...>` (no encoded words), and parses back to the link."""
    assert b"=?utf-8?" not in b"\n".join(line for line in raw.split(b"\n") if line.startswith(b"List-"))
    match = RAW_LIST_UNSUBSCRIBE.search(raw)
    assert match and match[1].decode() == link
    parsed = message_from_bytes(raw, policy=default)
    assert parsed["List-Unsubscribe"] == f"<{link}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Subject"] == "ご契約更新のご案内"  # other headers still use encoded words for non-ASCII


def test_list_unsubscribe_is_raw_in_the_graph_mime(stack):
    link = long_link(stack)
    assert len(link) > 78  # long enough that default header folding would have encoded it
    assert deliver_until_settled(stack, action(unsubscribe_url=link)).status == DeliveryStatus.SENT
    [mail] = stack.graph.sent()
    assert_one_click_headers(mail.mime, link)


def test_list_unsubscribe_is_raw_in_the_outbox_eml(stack, tmp_path):
    link = long_link(stack)
    result = OutboxTransport(tmp_path / "outbox", MAILBOX).send(action(unsubscribe_url=link))
    assert_one_click_headers((tmp_path / "outbox" / result.reference).read_bytes(), link)


def test_unsubscribing_suppresses_the_address_under_any_customer_record(stack):
    container = stack.container
    container.customers.upsert_many([Customer.from_dict({"id": "C-001", "email": CUSTOMER_EMAIL})])
    token = sign(container.settings, UNSUBSCRIBE, "C-001")
    unsubscribe(container.settings, container.suppressions, token, "one-click",
                lambda customer_id: container.customers.get(customer_id).customer.email)
    # The same person as another CRM record, the address spelt differently: not mailed either.
    other = action(key="renewal:C-777:90", to="  Taro@EXAMPLE.co.jp ")
    other = other.__class__(**{**other.__dict__, "customer_id": "C-777"})
    assert deliver_until_settled(stack, other).status == DeliveryStatus.OPTED_OUT
    assert not stack.graph.transmitted()
    rows = list(container.tables.table("Suppressions").list_entities())
    assert {row["PartitionKey"] for row in rows} == {"customer", "email"}
    assert all(CUSTOMER_EMAIL.lower() not in str(value).lower() for row in rows for value in row.values())


def test_a_mail_without_unsubscribe_link_is_refused_with_the_reason(stack):
    outcome = deliver_until_settled(stack, action(unsubscribe_url=None))
    assert (outcome.status, outcome.reason) == (DeliveryStatus.FAILED, NO_UNSUBSCRIBE_LINK)
    assert stack.graph.calls("create") == 0 and not stack.graph.transmitted()
    again = deliver_until_settled(stack, action(unsubscribe_url=None))  # redelivered: still refused, recorded
    assert again.status == DeliveryStatus.FAILED


def test_accepted_send_still_in_the_outbox_is_not_sent_again(azurite, tmp_path):
    with patient_stack(azurite, tmp_path) as stack:
        stack.graph.outbox_delay = 3600.0  # the accepted mail stays in the Outbox for the whole test
        stack.graph.inject("send", Fault(kind="reset_after"))  # Graph accepted it; the client saw a reset
        first = deliver_until_settled(stack, action())
        assert first.status == DeliveryStatus.RESCHEDULED
        assert first.retry_at.timestamp() - stack.clock() >= 29  # waits for the mail to settle, never sleeps
        stack.clock.advance(60)
        [copy] = stack.due(EMAIL)
        again = deliver(stack, copy)
        assert again.status == DeliveryStatus.SENT
        assert len(stack.graph.transmitted()) == 1 and stack.graph.calls("create") == 1
        assert not stack.graph.sent()  # still in the Outbox: found there, not in Sent Items


def test_slow_rate_limit_storage_does_not_reschedule_a_mail_that_may_go(stack):
    limiter = stack.container.rate_limiter
    reserve = limiter.reserve

    def slow_reserve(budget, not_before=None):  # Table Storage answering slowly (a loaded host, a far region)
        slot = reserve(budget, not_before)
        time.sleep(0.2)
        return slot
    limiter.reserve = slow_reserve
    assert deliver(stack, action()).status == DeliveryStatus.SENT
