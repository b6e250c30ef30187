"""Ledger outcomes against Azurite: ETag compare-and-swap against concurrent writers, rep vs CRM, idempotency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from shared.domain.errors import Conflict, InvalidInput, NotFound
from shared.opportunities.ledger import CRM, IN_PROGRESS, LOST, NOTIFIED, QUEUED, REP, WON, OpportunityLedger, row_key
from tests.integration.test_ledger import claim

NOW = datetime(2026, 11, 24, tzinfo=UTC)


class _Interleaved:
    """The real table, except that a compare-and-swap lets `rival()` write between its read and its write."""

    def __init__(self, table, rival):
        self._table, self._rival = table, rival

    def compare_and_swap(self, partition, row, mutate, **options):
        def racing(current):
            decided = mutate(current)
            self._rival()  # a concurrent writer lands after this read, before this write
            return decided

        return self._table.compare_and_swap(partition, row, racing, **options)

    def __getattr__(self, name):
        return getattr(self._table, name)


class _RacingLedger(OpportunityLedger):
    """A ledger whose next update loses a race against `rival` (set it before the call)."""

    rival = None

    @property
    def table(self):
        return _Interleaved(self.storage.table("Opportunities"), self._take_rival)

    def _take_rival(self):
        rival, self.rival = self.rival, None
        if rival is not None:
            rival()


@pytest.fixture
def ledger(container) -> _RacingLedger:
    return _RacingLedger(container.storage, container.settings.customer_shards)


def _queued(ledger, i: int = 1) -> str:
    c = claim(i)
    ledger.claim([c], NOW)
    ledger.mark_published([c], NOW)
    return f"{ledger.partition_of(c.customer_id)}~{row_key(c.key)}"


def test_a_late_delivery_does_not_overwrite_the_reps_won(ledger):
    oid = _queued(ledger)
    plain = OpportunityLedger(ledger.storage, ledger.shards)
    # mark_notified reads `queued`; before it writes, the rep records `won`.
    ledger.rival = lambda: plain.record_outcome(oid, WON, source=REP, now=NOW, amount=480000, by="hanako")
    ledger.mark_notified("C-0001", claim(1).key, NOW)
    final = plain.get(oid)
    assert (final.status, final.amount, final.outcome_source, final.decided_by) == (WON, 480000, REP, "hanako")


def test_the_crm_outcome_wins_over_a_racing_rep_click_in_either_order(ledger):
    plain = OpportunityLedger(ledger.storage, ledger.shards)
    for i, rep_first in ((1, True), (2, False)):
        oid = _queued(ledger, i)
        rep = lambda oid=oid: plain.record_outcome(oid, LOST, source=REP, now=NOW, decision="not_now")  # noqa: E731
        crm = lambda oid=oid: plain.record_outcome(oid, WON, source=CRM, now=NOW, amount=300000,  # noqa: E731
                                                  deal_id="D-9", by="crm:zoho")
        if rep_first:
            ledger.rival = rep  # the rep's click lands between the CRM's read and write
            ledger.record_outcome(oid, WON, source=CRM, now=NOW, amount=300000, deal_id="D-9", by="crm:zoho")
        else:
            crm()
            with pytest.raises(Conflict):
                rep()
        final = plain.get(oid)
        assert (final.status, final.amount, final.deal_id, final.outcome_source) == (WON, 300000, "D-9", CRM)


def test_threads_racing_end_in_the_documented_state(ledger):
    oid = _queued(ledger)
    plain = OpportunityLedger(ledger.storage, ledger.shards)
    barrier = threading.Barrier(3)
    errors: list[Exception] = []

    def run(action):
        barrier.wait()
        try:
            action()
        except Conflict as exc:  # the rep's click after the CRM closed it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in (
        lambda: plain.mark_notified("C-0001", claim(1).key, NOW),
        lambda: plain.record_outcome(oid, IN_PROGRESS, source=REP, now=NOW),
        lambda: plain.record_outcome(oid, WON, source=CRM, now=NOW, amount=1000, deal_id="D-1"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = plain.get(oid)
    assert (final.status, final.amount, final.deal_id, final.outcome_source) == (WON, 1000, "D-1", CRM)


def test_outcomes_are_idempotent_audited_and_checked(ledger):
    oid = _queued(ledger)
    first = ledger.record_outcome(oid, WON, source=REP, now=NOW, amount=5, by="hanako@contoso.com")
    stored = ledger.get(oid).etag
    again = ledger.record_outcome(oid, WON, source=REP, now=datetime(2026, 11, 25, tzinfo=UTC), amount=5)
    assert again.decided_at == first.decided_at == NOW and ledger.get(oid).etag == stored  # nothing written
    assert first.decided_by == "hanako@contoso.com" and first.to_dict()["decided_at"] == NOW.isoformat()
    for bad in (float("inf"), float("nan"), -1, True, "5"):
        with pytest.raises(InvalidInput):
            ledger.record_outcome(oid, WON, source=REP, now=NOW, amount=bad)
    with pytest.raises(NotFound):
        ledger.record_outcome("p00~nothing", WON, source=REP, now=NOW)
    # A second deal cannot count against an opportunity another deal answered.
    ledger.record_outcome(oid, WON, source=CRM, now=NOW, amount=7, deal_id="D-1")
    with pytest.raises(Conflict):
        ledger.record_outcome(oid, WON, source=CRM, now=NOW, amount=8, deal_id="D-2")
    # The same deal changing its stage updates the outcome.
    assert ledger.record_outcome(oid, LOST, source=CRM, now=NOW, deal_id="D-1").status == LOST
    assert ledger.get(oid).status not in (NOTIFIED, QUEUED)
