"""The pipeline's triggers: daily sweep timer, shard evaluator, CRM change-event consumer."""

import logging
from datetime import UTC, datetime

import azure.functions as func

from shared.container import get_container
from shared.domain.events import CrmEvent
from shared.domain.names import CRM_EVENTS, SWEEP_SHARDS
from shared.pipeline.changes import handle_crm_event
from shared.pipeline.sweep import ShardTask, evaluate_shard, plan_sweep

log = logging.getLogger(__name__)
bp = func.Blueprint()


@bp.function_name("sweep_timer")
@bp.timer_trigger(arg_name="timer", schedule="%SWEEP_SCHEDULE%", use_monitor=True)
def sweep_timer(timer: func.TimerRequest) -> None:
    """Fan the daily sweep out: one `sweep-shards` message per customer shard."""
    container = get_container()
    shards = plan_sweep(container.settings, container.broker, datetime.now(UTC))
    log.info("sweep planned: %d shards%s", shards, " (timer was past due)" if timer.past_due else "")


@bp.function_name("sweep_shard")
@bp.service_bus_queue_trigger(arg_name="msg", queue_name=SWEEP_SHARDS, connection="ServiceBusConnection")
def sweep_shard(msg: func.ServiceBusMessage) -> None:
    """Evaluate one shard. An exception abandons the message; Service Bus redelivers (claims keep it exactly-once)."""
    container = get_container()
    task = ShardTask.from_json(msg.get_body())
    report = evaluate_shard(container.customers, container.evaluator, container.planner, task,
                            journeys=container.journeys)
    log.info("shard %d: %d customers, %d firings, %d planned, %d already planned, %d recovered, %d messages, "
             "%d rejected", task.shard, report.customers, report.firings, report.planned, report.already_planned,
             report.recovered, report.messages, report.rejected)


@bp.function_name("crm_event")
@bp.service_bus_queue_trigger(arg_name="msg", queue_name=CRM_EVENTS, connection="ServiceBusConnection")
def crm_event(msg: func.ServiceBusMessage) -> None:
    """Merge one CRM change into the customer store and plan the `on: change` rules it triggers."""
    container = get_container()
    event = CrmEvent.from_json(msg.get_body())
    outcome = handle_crm_event(container.customers, container.evaluator, container.planner, event,
                               datetime.now(UTC), container.record_fetchers, journeys=container.journeys)
    log.info("crm event %s/%s from %s: changed=%s deleted=%s planned=%d", event.entity, event.operation,
             event.source, outcome.changed, outcome.deleted, outcome.report.planned)
