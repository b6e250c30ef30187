"""Service Bus triggers of the `teams` and `email` queues: parse, deliver once, map the outcome.

Returning normally completes the message (sent, duplicate, suppressed, failed-and-recorded, or rescheduled as a
new scheduled copy). Raising abandons it, so the broker redelivers and eventually dead-letters it: that is kept for
what a redelivery may fix (configuration, storage outages) and for bodies that are not action messages at all.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.container import get_container
from shared.domain.errors import InvalidInput, Location
from shared.domain.messages import ActionMessage
from shared.domain.names import EMAIL, TEAMS

log = logging.getLogger(__name__)
bp = func.Blueprint()


def deliver_from_queue(msg: func.ServiceBusMessage, channel: str) -> str:
    """Deliver one queued ActionMessage of `channel`; returns the outcome status."""
    message = ActionMessage.from_json(msg.get_body())
    if message.channel != channel:
        raise InvalidInput(f"a {message.channel!r} action on the {channel!r} queue", Location(field="channel"))
    outcome = get_container().delivery.deliver(message)
    log.info("%s %s: %s (delivery %s)", channel, message.dedupe_key, outcome.status, msg.delivery_count)
    return outcome.status


@bp.function_name("send_teams")
@bp.service_bus_queue_trigger(arg_name="msg", queue_name=TEAMS, connection="ServiceBusConnection")
def send_teams(msg: func.ServiceBusMessage) -> None:
    deliver_from_queue(msg, "teams")


@bp.function_name("send_email")
@bp.service_bus_queue_trigger(arg_name="msg", queue_name=EMAIL, connection="ServiceBusConnection")
def send_email(msg: func.ServiceBusMessage) -> None:
    deliver_from_queue(msg, "email")
