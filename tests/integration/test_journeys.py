"""The journey in the pipeline, against Azurite and the local broker: generic webhook events and sweeps move a
customer through all five stages exactly once, whatever the delivery order, races, crashes or missed days."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime

import pytest

from shared.container import Container
from shared.crm.ingest import WebhookIntake
from shared.crm.tasks import DataverseTaskWriter, write_crm_message
from shared.domain.names import CRM_TASKS, TEAMS
from shared.journeys.engine import journey_meta
from shared.journeys.history import journey_view
from shared.pipeline.changes import handle_crm_event
from shared.pipeline.sweep import ShardTask, evaluate_shard
from tests.conftest import FIXTURES, make_settings
from tests.crm_helpers import GENERIC_SECRET, NOW, generic_request
from tests.queues import drain
from tests.standins.dataverse import DataverseStandIn

EVENTS = FIXTURES / "journeys"
ACCOUNT = "7a1f0c2e-aaaa-bbbb-cccc-000000000001"


@pytest.fixture
def journey_container(azurite, tmp_path) -> Container:
    settings = make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string,
                             GENERIC_WEBHOOK_SECRET=GENERIC_SECRET)
    container = Container(settings)
    container.tables.ensure_tables()
    return container


def generic_event(name: str, customer_id: str | None = None, event_id: str | None = None):
    body = (EVENTS / name).read_bytes()
    if customer_id:
        body = body.replace(b'"C-J1"', f'"{customer_id}"'.encode())
    headers = {"X-Crmflow-Event-Id": event_id} if event_id else {}
    # Sent (and received) when it happened: a receive time before the event's own time would clamp it.
    stamp = json.loads(body).get("updated_at")
    sent = datetime.fromisoformat(stamp) if stamp else NOW
    intake = WebhookIntake(make_settings(EVENTS, GENERIC_WEBHOOK_SECRET=GENERIC_SECRET), broker=None,
                           clock=lambda: sent)
    [event] = intake.parse("generic", generic_request(body, now=sent, **headers))
    return event


def deliver(container: Container, event, now: datetime):
    return handle_crm_event(container.customers, container.evaluator, container.planner, event, now,
                            journeys=container.journeys)


def sweep(container: Container, customer_id: str, today: date):
    from shared.customers.store import shard_of

    shard = shard_of(customer_id, container.settings.customer_shards)
    now = datetime(today.year, today.month, today.day, 0, 30, tzinfo=UTC)
    return evaluate_shard(container.customers, container.evaluator, container.planner,
                          ShardTask(shard, now, today), journeys=container.journeys)


def journey(container: Container, customer_id: str = "C-J1") -> dict:
    return journey_view(container.customers, container.journey_history, customer_id)


def edges(view: dict) -> list[tuple]:
    return [(h["from"], h["to"]) for h in view["history"]]


def journey_messages(container: Container) -> tuple[list, list]:
    teams = [m for m in drain(container.broker, TEAMS) if m.kind == "journey"]
    tasks = [m for m in drain(container.broker, CRM_TASKS) if m.kind == "journey"]
    return teams, tasks


def test_a_customer_goes_through_all_five_stages_and_into_the_next_cycle(journey_container):
    c = journey_container
    deliver(c, generic_event("1_subscription_created.json"), datetime(2025, 12, 1, 2, tzinfo=UTC))
    assert journey(c)["stage"] == "contract"
    # Won and delivered in one event: implementation, then onboarding, each with its notice and task.
    deliver(c, generic_event("2_won_and_delivered.json"), datetime(2025, 12, 5, 2, tzinfo=UTC))
    view = journey(c)
    assert view["stage"] == "onboarding"
    assert edges(view) == [(None, "contract"), ("contract", "implementation"), ("implementation", "onboarding")]
    cause = f"generic:{generic_event('2_won_and_delivered.json').event_id}"
    assert [h["cause"] for h in view["history"]][1:] == [cause] * 2
    teams, tasks = journey_messages(c)
    assert [m.rule for m in tasks] == ["customer-success-contract", "customer-success-implementation",
                                       "customer-success-onboarding"]
    assert len(teams) == 3 and all(m.to == "hanako@contoso.com" for m in teams)
    assert "onboarding" in teams[-1].subject and "implementation" in teams[1].subject  # rendered per stage
    # The deal's other fields survived the partial event (merged by deal id, not replaced).
    customer = c.customers.get("C-J1").customer
    assert customer.deals[0].type == "subscription_new" and customer.deals[0].onboarding_due == date(2026, 1, 10)
    # Sweeps: nothing before the onboarding date, utilization on it, renewal on the notice date.
    sweep(c, "C-J1", date(2026, 1, 9))
    assert journey(c)["stage"] == "onboarding"
    sweep(c, "C-J1", date(2026, 1, 10))
    assert journey(c)["stage"] == "utilization"
    sweep(c, "C-J1", date(2026, 11, 15))
    view = journey(c)
    assert view["stage"] == "renewal" and view["history"][-1]["cause"] == "renewal_notice_date"
    # A won renewal deal starts cycle 2.
    deliver(c, generic_event("3_renewal_deal_won.json"), datetime(2026, 11, 20, 2, tzinfo=UTC))
    view = journey(c)
    assert view["stage"] == "utilization" and view["history"][-1]["cycle"] == 2
    assert view["since"] == "2026-11-20T02:00:00+00:00"
    assert [h["to"] for h in view["history"]] == ["contract", "implementation", "onboarding", "utilization",
                                                   "renewal", "utilization"]
    teams, tasks = journey_messages(c)
    assert [m.rule for m in tasks] == ["customer-success-utilization", "customer-success-renewal",
                                       "customer-success-renewed"]
    assert journey_meta(c.customers.get("C-J1").customer)["pending"] == []
    assert [d.id for d in c.customers.get("C-J1").customer.deals] == ["D-1", "D-2"]


def test_redelivered_and_older_events_never_move_the_stage_twice_or_back(journey_container):
    c = journey_container
    created, delivered = generic_event("1_subscription_created.json"), generic_event("2_won_and_delivered.json")
    older = generic_event("2_older_open.json")
    deliver(c, created, datetime(2025, 12, 1, 2, tzinfo=UTC))
    deliver(c, delivered, datetime(2025, 12, 5, 2, tzinfo=UTC))
    first = journey(c)
    journey_messages(c)
    for event in (created, delivered, older, delivered):  # replays and an older event that says "open"/"contract"
        deliver(c, event, datetime(2025, 12, 6, 2, tzinfo=UTC))
    assert journey(c) == first and first["stage"] == "onboarding"
    assert c.customers.get("C-J1").customer.deals[0].stage == "delivered"
    assert journey_messages(c) == ([], [])
    # Out of order from the start: the newest event first still ends in the same place.
    deliver(c, generic_event("2_won_and_delivered.json", "C-J2"), datetime(2025, 12, 5, 2, tzinfo=UTC))
    deliver(c, generic_event("1_subscription_created.json", "C-J2"), datetime(2025, 12, 5, 3, tzinfo=UTC))
    assert journey(c, "C-J2")["stage"] == "onboarding"
    assert len(journey(c, "C-J2")["history"]) == 3


def test_an_unrelated_deal_keeps_the_others_and_moves_nothing(journey_container):
    c = journey_container
    deliver(c, generic_event("1_subscription_created.json"), datetime(2025, 12, 1, 2, tzinfo=UTC))
    deliver(c, generic_event("other_deal.json"), datetime(2025, 12, 2, 2, tzinfo=UTC))
    customer = c.customers.get("C-J1").customer
    assert [d.id for d in customer.deals] == ["D-1", "D-9"] and customer.stage == "contract"


def test_two_workers_racing_on_one_customer_take_each_step_once(journey_container, tmp_path):
    c = journey_container
    deliver(c, generic_event("1_subscription_created.json"), datetime(2025, 12, 1, 2, tzinfo=UTC))
    journey_messages(c)
    other = Container(c.settings)  # a second instance: its own clients, same tables and broker file
    events = [generic_event("2_won_and_delivered.json", event_id=f"race-{i}") for i in range(2)]
    barrier = threading.Barrier(2)
    errors = []

    def work(container, event):
        try:
            barrier.wait()
            deliver(container, event, datetime(2025, 12, 5, 2, tzinfo=UTC))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(box, event)) for box, event in zip((c, other), events,
                                                                                       strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    view = journey(c)
    assert edges(view) == [(None, "contract"), ("contract", "implementation"), ("implementation", "onboarding")]
    teams, tasks = journey_messages(c)
    assert sorted(m.rule for m in tasks) == ["customer-success-implementation", "customer-success-onboarding"]
    assert len(teams) == 2


def test_a_missed_sweep_day_still_moves_the_customer_and_records_when_it_was_due(journey_container):
    c = journey_container
    deliver(c, generic_event("1_subscription_created.json"), datetime(2025, 12, 1, 2, tzinfo=UTC))
    deliver(c, generic_event("2_won_and_delivered.json"), datetime(2025, 12, 5, 2, tzinfo=UTC))
    sweep(c, "C-J1", date(2026, 1, 13))  # no sweep ran on 10, 11 and 12 January
    step = journey(c)["history"][-1]
    assert (step["to"], step["due"], step["cause"]) == ("utilization", "2026-01-10", "onboarding_due")
    sweep(c, "C-J1", date(2026, 1, 14))
    assert len(journey(c)["history"]) == 4


def test_a_crash_between_the_stage_write_and_planning_is_finished_by_the_redelivery(journey_container,
                                                                                  monkeypatch):
    c = journey_container
    deliver(c, generic_event("1_subscription_created.json"), datetime(2025, 12, 1, 2, tzinfo=UTC))
    journey_messages(c)
    event = generic_event("2_won_and_delivered.json")
    runner = c.journeys
    real_plan = runner.planner.plan

    def crash(*args, **kwargs):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(runner.planner, "plan", crash)
    with pytest.raises(RuntimeError):
        deliver(c, event, datetime(2025, 12, 5, 2, tzinfo=UTC))
    stored = c.customers.get("C-J1").customer
    assert stored.stage == "onboarding" and len(journey_meta(stored)["pending"]) == 2
    assert journey_messages(c) == ([], [])
    monkeypatch.setattr(runner.planner, "plan", real_plan)
    deliver(c, event, datetime(2025, 12, 5, 2, 1, tzinfo=UTC))  # the redelivery
    deliver(c, event, datetime(2025, 12, 5, 2, 2, tzinfo=UTC))  # and once more: nothing new
    teams, tasks = journey_messages(c)
    assert len(teams) == 2
    assert [m.rule for m in tasks] == ["customer-success-implementation", "customer-success-onboarding"]
    assert len(journey(c)["history"]) == 3
    assert journey_meta(c.customers.get("C-J1").customer)["pending"] == []


def test_a_crash_after_claiming_is_published_by_the_next_sweep(journey_container, monkeypatch):
    c = journey_container
    runner = c.journeys
    real_publish = runner.planner.publish
    monkeypatch.setattr(runner.planner, "publish", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        deliver(c, generic_event("1_subscription_created.json"), datetime(2025, 12, 1, 2, tzinfo=UTC))
    monkeypatch.setattr(runner.planner, "publish", real_publish)
    sweep(c, "C-J1", date(2025, 12, 2))
    teams, tasks = journey_messages(c)
    assert [m.rule for m in tasks] == ["customer-success-contract"] and len(teams) == 1
    assert len(journey(c)["history"]) == 1


def test_stage_is_written_back_to_the_dataverse_account(azurite, tmp_path):
    with DataverseStandIn() as dataverse:
        dataverse.add("accounts", ACCOUNT, {"accountid": ACCOUNT, "name": "Contoso", "crmflow_stage": None})
        settings = make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string,
                                 GENERIC_WEBHOOK_SECRET=GENERIC_SECRET, CRM_TASK_TARGET="dataverse",
                                 DATAVERSE_URL=dataverse.url, GRAPH_TENANT_ID="t", GRAPH_CLIENT_ID="c",
                                 GRAPH_CLIENT_SECRET="s")
        c = Container(settings)
        c.tables.ensure_tables()
        from shared.crm.dataverse import DataverseClient
        from shared.crm.mapping import load_mapping

        client = DataverseClient(dataverse.url, dataverse.get_token, load_mapping(settings.mappings_dir, "dataverse"))
        writer = DataverseTaskWriter(client)
        deliver(c, generic_event("1_subscription_created.json", ACCOUNT), datetime(2025, 12, 1, 2, tzinfo=UTC))
        deliver(c, generic_event("2_won_and_delivered.json", ACCOUNT), datetime(2025, 12, 5, 2, tzinfo=UTC))
        messages = drain(c.broker, CRM_TASKS)
        stage_messages = [m for m in messages if m.channel == "crm_stage"]
        assert len(stage_messages) == 2  # one per event, the second after two transitions
        current = c.customers.get(ACCOUNT).customer.stage
        for message in reversed(messages):  # out of order: each write takes the stage as it is now
            write_crm_message(message, writer, current_stage=lambda _id: current)
        assert dataverse.tables["accounts"][ACCOUNT]["crmflow_stage"] == 3  # onboarding's option value
        # Two stage writes (tasks are PATCHed too: created under an id derived from their dedupe key).
        assert sum(1 for method, path in dataverse.requests if method == "PATCH" and "/accounts(" in path) == 2
        tasks = [row for row in dataverse.tables["tasks"].values()]
        assert len(tasks) == 3


def test_dashboard_journey_part_counts_edges_days_in_stage_and_sla(journey_container):
    from shared.dashboard.report import build_dashboard

    c = journey_container
    deliver(c, generic_event("1_subscription_created.json"), datetime(2025, 12, 1, 2, tzinfo=UTC))
    deliver(c, generic_event("2_won_and_delivered.json"), datetime(2025, 12, 11, 2, tzinfo=UTC))
    deliver(c, generic_event("1_subscription_created.json", "C-J2"), datetime(2025, 12, 1, 2, tzinfo=UTC))
    sweep(c, "C-J1", date(2026, 1, 10))
    data = build_dashboard(c.storage, c.ledger, c.approval_store, c.broker, datetime(2026, 1, 20, tzinfo=UTC),
                           journey=c.journey)["journey"]
    assert data["stages"] == {"contract": 1, "implementation": 0, "onboarding": 0, "utilization": 1, "renewal": 0}
    # Last 30 days (since 21 December): only the sweep's step.
    assert data["transitions"] == {"onboarding→utilization": 1}
    assert data["median_days"]["contract"] == 10.0 and data["median_days"]["implementation"] == 0.0
    assert data["median_days"]["onboarding"] == 29.9 and data["median_days"]["renewal"] is None
    # C-J2 has been in contract (sla 30 days) since 1 December.
    assert data["past_sla"] == {"contract": 1, "implementation": 0, "onboarding": 0, "renewal": 0}
    assert data["past_sla_total"] == 1


def test_a_dataverse_opportunity_won_moves_its_contact_through_two_stages(journey_container):
    from tests.crm_helpers import dataverse_request, sample

    c = journey_container
    intake = WebhookIntake(c.settings, broker=None, clock=lambda: NOW)
    [event] = intake.parse("dataverse", dataverse_request(sample("dataverse_opportunity_win.json")))
    assert event.entity == "deal"
    deliver(c, event, datetime(2025, 11, 22, 9, tzinfo=UTC))
    contact = "9c8b7a6d-1111-2222-3333-444455556666"
    view = journey(c, contact)
    assert view["stage"] == "implementation"  # the deal appeared already won: contract, then implementation
    assert [h["cause"] for h in view["history"]] == [f"dataverse:{event.event_id}"] * 2
