"""The work list's heads and the snapshot's version (in memory): a page read from a head is the page the table query
returns, outcomes show in the heads at once, and a refresh elsewhere shows on the next view."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.container import Container
from shared.dashboard.snapshot import SnapshotStore
from shared.dashboard.worklist import HEAD_SIZE, TEAM, owner_key
from shared.opportunities.ledger import FiringClaim
from shared.storage.memory import MemoryStorage
from shared.web.dashboard_auth import Viewer
from tests.conftest import make_settings

NOW = datetime(2026, 11, 24, 3, tzinfo=UTC)
BUSY, QUIET = "busy.rep@contoso.com", "quiet.rep@contoso.com"


def claim(number: int, owner: str, kind: str, status: str) -> FiringClaim:
    return FiringClaim(key=f"rule-{kind}:C-{number}:ever", rule=f"rule-{kind}", kind=kind, customer_id=f"C-{number}",
                       owner_name=owner.split("@")[0], owner_email=owner, status=status, recommendation="demo",
                       local_date=f"2026-11-{1 + number % 28:02d}", actions=())


@pytest.fixture
def container(tmp_path) -> Container:
    container = Container(make_settings(tmp_path, CUSTOMER_SHARDS="4", UNSUBSCRIBE_SIGNING_KEY="k" * 32),
                          storage=MemoryStorage())
    kinds, statuses = ("cross_sell", "upsell", "campaign"), ("queued", "notified", "in_progress")
    claims = [claim(n, BUSY, kinds[n % 3], statuses[n % 3]) for n in range(HEAD_SIZE + 40)]
    claims += [claim(1000 + n, QUIET, kinds[n % 3], "queued") for n in range(5)]
    container.ledger.claim(claims, NOW)
    container.dashboard.refresh(NOW)
    return container


def walk(page, **filters) -> list[str]:
    """Every opportunity id of a list, page by page."""
    seen, cursor = [], None
    for _ in range(100):
        result = page(cursor=cursor, **filters)
        seen += [item.opportunity_id for item in result.items]
        cursor = result.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("the pages never ended")


@pytest.mark.parametrize("filters", [
    {"owner": owner_key(BUSY), "size": 25}, {"owner": owner_key(BUSY), "size": 100},
    {"owner": owner_key(BUSY), "kind": "upsell", "size": 7}, {"owner": owner_key(QUIET), "status": "queued",
                                                              "size": 2},
    {"size": 30}, {"kind": "campaign", "size": 10}, {"status": "in_progress", "size": 100}])
def test_pages_from_the_heads_are_the_pages_the_query_returns(container, filters):
    work = container.dashboard.work_list

    def query(cursor=None, owner=None, kind=None, status=None, size=25):
        from shared.dashboard.worklist import _decode
        return work._query(owner, kind, status, size, _decode(cursor))

    expected = walk(query, **filters)
    assert expected and len(expected) == len(set(expected))
    assert walk(work.page, **filters) == expected


def test_a_long_list_keeps_its_first_rows_and_a_short_one_all_of_them(container):
    work = container.dashboard.work_list
    busy, quiet, team = work.head(owner_key(BUSY)), work.head(owner_key(QUIET)), work.head(TEAM)
    assert (len(busy.items), busy.complete) == (HEAD_SIZE, False)
    assert (len(quiet.items), quiet.complete) == (5, True)
    assert len(team.items) == HEAD_SIZE and not team.complete
    assert [i.row for i in busy.items] == sorted(i.row for i in busy.items)
    assert container.dashboard.refresh(NOW).heads_written == 0  # unchanged: no head rewritten


def test_an_outcome_changes_both_heads_at_once(container):
    service = container.dashboard
    first = service.work_list.page(owner=owner_key(QUIET)).items[0]
    service.record_outcome(first.opportunity_id, b'{"status": "in_progress"}', Viewer("quiet.rep@contoso.com",
                                                                                    "app_service"), NOW)
    for key in (owner_key(QUIET), TEAM):
        head = service.work_list.head(key)
        statuses = {i.opportunity_id: i.status for i in head.items}
        if first.opportunity_id in statuses or key != TEAM:  # the team's head may end before the quiet rep
            assert statuses[first.opportunity_id] == "in_progress"
    service.record_outcome(first.opportunity_id, b'{"status": "won", "amount": 1000}', Viewer(mode="key"), NOW)
    ids = [i.opportunity_id for i in service.work_list.page(owner=owner_key(QUIET)).items]
    assert first.opportunity_id not in ids and len(ids) == 4
    assert first.opportunity_id not in [i.opportunity_id for i in service.work_list.head(TEAM).items]
    stored = container.ledger.get(first.opportunity_id)
    assert (stored.status, stored.decided_by, stored.decided_via, stored.outcome_source) == (
        "won", "function-key", "dashboard", "rep")


def test_a_refresh_by_another_instance_shows_on_the_next_view(container):
    storage = container.storage
    mine, theirs = SnapshotStore(storage), SnapshotStore(storage)
    before = mine.read()
    assert mine.read() is before  # held in memory while the version is unchanged
    theirs.write({**before, "kpi": {**before["kpi"], "open": 12345}})
    assert mine.read()["kpi"]["open"] == 12345
