"""The journey engine as a pure function: due transitions in order, once per cycle, never backwards."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from shared.domain.model import Customer
from shared.journeys.engine import JourneyEngine, journey_meta
from shared.journeys.loader import load_journey
from shared.rendering.engine import Renderer

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine() -> JourneyEngine:
    return JourneyEngine(load_journey(ROOT / "journeys", Renderer(ROOT / "templates", "ja-JP")))


def customer(stage=None, deal_stage="open") -> Customer:
    return Customer.from_dict({"id": "C-1", "stage": stage, "deals": [
        {"id": "D-1", "type": "subscription_new", "stage": deal_stage, "onboarding_due": "2026-02-01",
         "renewal_notice_date": "2026-12-01"}]})


def test_due_transitions_apply_in_order_with_their_causes(engine):
    moved, steps = engine.advance(customer(stage="delivered", deal_stage="delivered"),
                                  now=NOW, local=NOW.date(), cause="generic:e-1")
    # a stage that is not a journey state counts as not in the journey yet
    assert [(s.source, s.target, s.cause) for s in steps] == [
        (None, "contract", "generic:e-1"), ("contract", "implementation", "generic:e-1"),
        ("implementation", "onboarding", "generic:e-1"), ("onboarding", "utilization", "onboarding_due")]
    assert moved.stage == "utilization"
    assert steps[-1].due == date(2026, 2, 1) and [s.seq for s in steps] == [1, 2, 3, 4]


def test_nothing_due_means_nothing_changes_and_nothing_goes_back(engine):
    start, _ = engine.advance(customer(), now=NOW, local=NOW.date())
    assert start.stage == "contract"
    same, steps = engine.advance(start, now=NOW, local=NOW.date())
    assert steps == [] and same is start
    # the deal falls back to open (an older event would not do this, a hand edit might): the stage stays
    ahead, _ = engine.advance(Customer.from_dict({**start.to_dict(), "deals": [{"id": "D-1", "stage": "won",
                                                                                "type": "subscription_new"}]}),
                              now=NOW, local=NOW.date())
    back = Customer.from_dict({**ahead.to_dict(), "deals": [{"id": "D-1", "stage": "open",
                                                             "type": "subscription_new"}]})
    assert engine.advance(back, now=NOW, local=NOW.date())[1] == []
    assert ahead.stage == "implementation"


def test_a_lost_or_unfollowed_deal_starts_nothing(engine):
    assert engine.advance(Customer.from_dict(
        {"id": "C-1", "deals": [{"id": "D-1", "type": "subscription_new", "stage": "lost"},
                                {"id": "D-2", "type": "one_time", "stage": "open"}]}),
        now=NOW, local=NOW.date())[1] == []


def test_a_won_renewal_starts_the_next_cycle_with_its_own_dates(engine):
    renewal = Customer.from_dict({**customer().to_dict(), "stage": "renewal", "custom": {"journey": {
        "cycle": 1, "deal": "D-1", "seq": 5, "done": ["contract", "implementation", "onboarding", "utilization",
                                                        "renewal"]}}})
    with_deal = Customer.from_dict({**renewal.to_dict(), "deals": [
        *renewal.to_dict()["deals"], {"id": "D-2", "type": "subscription_renewal", "stage": "won",
                                      "renewal_notice_date": "2027-12-01"}]})
    moved, [step] = engine.advance(with_deal, now=NOW, local=NOW.date())
    assert (step.source, step.target, step.cycle, step.deal) == ("renewal", "utilization", 2, "D-2")
    meta = journey_meta(moved)
    assert meta["used"] == ["D-1"] and meta["done"] == ["renewed"]
    _, [next_step] = engine.advance(moved, now=NOW, local=date(2027, 12, 1))
    assert (next_step.target, next_step.cycle, next_step.due) == ("renewal", 2, date(2027, 12, 1))
