"""The FunctionApp's functions, indexed once per test session.

`FunctionApp.get_functions()` validates name uniqueness against what an earlier call recorded, so a second call in
one process raises "does not have a unique function name". Tests share this cached index instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from azure.functions.decorators.function_app import Function
from azure.functions.servicebus import ServiceBusMessage

import function_app


@lru_cache(maxsize=1)
def registered_functions() -> dict[str, Function]:
    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def bindings_of(name: str) -> list[dict]:
    return [b.get_dict_repr() for b in registered_functions()[name].get_bindings()]


def sb_message(body: str, message_id: str) -> ServiceBusMessage:
    """A Service Bus message as the host hands it to a queue trigger."""
    return ServiceBusMessage(body=body.encode(), message_id=message_id, delivery_count=1,
                             enqueued_time_utc=datetime.now(UTC), application_properties={}, user_properties={})
