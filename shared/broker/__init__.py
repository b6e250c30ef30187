"""Message broker port and adapters (Service Bus in Azure, a durable local broker on a workstation)."""

from shared.broker.port import Broker, OutgoingMessage, ReceivedMessage

__all__ = ["Broker", "OutgoingMessage", "ReceivedMessage"]
