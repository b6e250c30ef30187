"""Service Bus trigger on `crm-tasks`: record each crm_task action in the CRM (or the local Tasks table).

Retryable errors propagate so Service Bus redelivers (the trigger has no retry policy of its own); permanent ones
(a malformed message) propagate too and end in the dead-letter queue after maxDeliveryCount — both writers are
idempotent by dedupe key, so redelivery never creates a second task.
"""

import azure.functions as func

from shared.container import get_container
from shared.crm.tasks import write_task
from shared.domain.messages import ActionMessage
from shared.domain.names import CRM_TASKS

bp = func.Blueprint()


@bp.function_name("crm_tasks")
@bp.service_bus_queue_trigger(arg_name="msg", queue_name=CRM_TASKS, connection="ServiceBusConnection")
def crm_tasks(msg: func.ServiceBusMessage) -> None:
    write_task(ActionMessage.from_json(msg.get_body()), get_container().task_writer)
