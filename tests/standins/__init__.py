"""Local stand-ins for Microsoft endpoints (token endpoint, Graph, Bot Connector, Teams Workflows webhook).

Threaded `http.server` on 127.0.0.1 and a free port, following the documented behaviour (202 on send, 429 with
Retry-After, 401 on expired tokens, 5xx), with faults injected per route. Reusable by any test or benchmark.
"""

from tests.standins.base import Fault, StandIn, TokenIssuer
from tests.standins.bot import BotStandIn
from tests.standins.graph import GraphStandIn
from tests.standins.token import TokenStandIn, self_signed_tls
from tests.standins.webhook import WebhookStandIn

__all__ = ["BotStandIn", "Fault", "GraphStandIn", "StandIn", "TokenIssuer", "TokenStandIn", "WebhookStandIn",
           "self_signed_tls"]
