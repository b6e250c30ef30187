"""Running the journey inside the pipeline: advance the customer, write it ETag-safe, then record, plan and sync.

Order of work for a customer that moves (what makes it exactly once per (customer, cycle, transition)):
  1. the customer is written with its new stage and the steps in `custom.journey.pending` (one ETag write, the same
     write that stores the CRM change on an event): a concurrent event re-reads and continues from the new stage,
     so two workers never take the same step twice;
  2. each pending step is inserted into `JourneyHistory` (atomic insert: a repeat is a no-op);
  3. each step's entry actions are planned as a rule firing keyed `<journey>-<transition>:<customer>:c<cycle>`:
     claimed once in the ledger, then published (broker message id = action key);
  4. with CRM_TASK_TARGET=dataverse, a stage-sync message goes to `crm-tasks` (the CRM writer PATCHes the stage);
  5. the pending steps are taken off the customer (ETag write).
A crash anywhere after 1 leaves the steps pending; the next event for the customer (a redelivery included) or the
next sweep repeats 2-5, which absorb what was done already (and re-publish ledger claims left unpublished).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime

from shared.broker import Broker, OutgoingMessage
from shared.crm.tasks import STAGE_SYNC
from shared.customers.store import CustomerStore
from shared.domain.errors import Conflict
from shared.domain.messages import ActionMessage
from shared.domain.model import Customer
from shared.domain.names import CRM_TASKS
from shared.journeys.engine import JourneyEngine, Step, has_pending, pending_steps, step_key, without_pending
from shared.journeys.history import JourneyHistory
from shared.journeys.model import Journey
from shared.rules import Evaluator
from shared.settings import Settings

log = logging.getLogger(__name__)

WRITE_ATTEMPTS = 8


class JourneyRunner:
    def __init__(self, journey: Journey, evaluator: Evaluator, planner, customers: CustomerStore,
                 history: JourneyHistory, broker: Broker, settings: Settings):
        self.journey = journey
        self.engine = JourneyEngine(journey)
        self.evaluator = evaluator
        self.planner = planner
        self.customers = customers
        self.history = history
        self.broker = broker
        self.settings = settings

    def advance(self, customer: Customer, *, now: datetime, prev: Customer | None = None, cause: str | None = None,
                today: date | None = None) -> tuple[Customer, list[Step]]:
        """Pure: the customer after the transitions due now, and the steps (see JourneyEngine.advance)."""
        local = today or self.evaluator.local_date(customer.timezone, now)
        return self.engine.advance(customer, now=now, local=local, prev=prev, cause=cause)

    def firings(self, customer: Customer, steps: list[Step], now: datetime, today: date | None = None):
        """(customer as of the step, firing) for each step with entry actions, rendered as of that stage."""
        pairs = []
        for step in steps:
            transition = self.journey.transition(step.transition)
            if not transition.rule.actions:
                continue
            snapshot = replace(customer, stage=step.target)
            firing = self.evaluator.plan(transition.rule, snapshot, now=now, today=today,
                                         key=step_key(self.journey, step, customer.id))
            pairs.append((snapshot, firing))
        return pairs

    def complete(self, customer: Customer, now: datetime, *, etag: str | None = None, recovering: bool = False,
                 today: date | None = None):
        """Steps 2-5 for every pending step of the stored `customer` (`etag`: its version, when known)."""
        from shared.pipeline.planner import PlanReport

        steps = pending_steps(customer)
        report = PlanReport()
        if not steps:
            return report
        self.history.record(customer.id, steps)
        pairs = self.firings(customer, steps, now, today)
        if pairs:
            report.add(self.planner.plan(pairs, now))
        if recovering:  # a crash may have left a claim unpublished
            report.add(self.planner.recover(self.planner.ledger.partition_of(customer.id), now))
        if self.settings.crm_task_target == "dataverse":
            last = steps[-1]
            key = f"{step_key(self.journey, last, customer.id)}~stage"
            message = ActionMessage(dedupe_key=key, channel=STAGE_SYNC,
                                    rule=self.journey.transition(last.transition).rule.id, kind="journey",
                                    customer_id=customer.id, to=last.target, subject=None,
                                    content={"stage": last.target}, planned_at=now)
            self.broker.publish(CRM_TASKS, [OutgoingMessage(body=message.to_json(), message_id=key,
                                                            subject=STAGE_SYNC)])
        self._clear(customer, etag, {step.seq for step in steps})
        return report

    def sweep_customer(self, customer: Customer, now: datetime, today: date | None = None):
        """The sweep's part: move a customer whose date (or any other condition) has come; (customer, report)."""
        advanced, steps = self.advance(customer, now=now, today=today)
        if not steps and not has_pending(customer):
            return customer, None
        for _ in range(WRITE_ATTEMPTS):
            stored = self.customers.get(customer.id)
            if stored is None:
                return customer, None
            recovering = has_pending(stored.customer)
            advanced, steps = self.advance(stored.customer, now=now, today=today)
            etag = stored.etag
            if steps:
                try:
                    etag = self.customers.put(advanced, stored.etag)
                except Conflict:
                    continue  # an event for this customer won the race: re-read and advance from there
            return advanced, self.complete(advanced, now, etag=etag, recovering=recovering, today=today)
        raise Conflict(f"customer {customer.id} kept changing during {WRITE_ATTEMPTS} journey attempts")

    def _clear(self, customer: Customer, etag: str | None, seqs: set[int]) -> None:
        for _ in range(WRITE_ATTEMPTS):
            if etag is None:
                stored = self.customers.get(customer.id)
                if stored is None:
                    return
                customer, etag = stored.customer, stored.etag
            cleaned = without_pending(customer, seqs)
            if cleaned is customer:
                return
            try:
                self.customers.put(cleaned, etag)
                return
            except Conflict:
                etag = None  # changed meanwhile: re-read (the steps stay recorded either way)
        log.warning("journey steps of customer %s stay pending after %d attempts", customer.id, WRITE_ATTEMPTS)
