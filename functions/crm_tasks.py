"""Service Bus trigger on `crm-tasks`: record each crm_task action in the CRM (or the local Tasks table), and write
journey stages back to the CRM (`crm_stage` messages).

Retryable errors propagate so Service Bus redelivers (the trigger has no retry policy of its own); permanent ones
(a malformed message) propagate too and end in the dead-letter queue after maxDeliveryCount — both writers are
idempotent by dedupe key, so redelivery never creates a second task.
"""

import azure.functions as func

from shared.container import get_container
from shared.crm.tasks import write_crm_message
from shared.domain.messages import ActionMessage
from shared.domain.names import CRM_TASKS

bp = func.Blueprint()


@bp.function_name("crm_tasks")
@bp.service_bus_queue_trigger(arg_name="msg", queue_name=CRM_TASKS, connection="ServiceBusConnection")
def crm_tasks(msg: func.ServiceBusMessage) -> None:
    container = get_container()
    write_crm_message(ActionMessage.from_json(msg.get_body()), container.task_writer,
                      current_stage=lambda customer_id: _stage(container, customer_id))


def _stage(container, customer_id: str) -> str | None:
    stored = container.customers.get(customer_id)
    return stored.customer.stage if stored else None
