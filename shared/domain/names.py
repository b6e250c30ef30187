"""Queue and table names from DESIGN.md, defined once."""

from typing import Final

from shared.domain.vocabulary import Channel

# Queues (Service Bus in Azure, the local durable broker on a workstation).
CRM_EVENTS: Final = "crm-events"
SWEEP_SHARDS: Final = "sweep-shards"
TEAMS: Final = "teams"
EMAIL: Final = "email"
CRM_TASKS: Final = "crm-tasks"
QUEUES: Final = (CRM_EVENTS, SWEEP_SHARDS, TEAMS, EMAIL, CRM_TASKS)

# Tables.
CUSTOMERS: Final = "Customers"
OPPORTUNITIES: Final = "Opportunities"
DELIVERIES: Final = "Deliveries"
SUPPRESSIONS: Final = "Suppressions"
APPROVALS: Final = "Approvals"
RATE_LIMITS: Final = "RateLimits"
TASKS: Final = "Tasks"
JOURNEY_HISTORY: Final = "JourneyHistory"
# The dashboard's materialised snapshot (a few rows) and its work list of open opportunities by owner.
DASHBOARD: Final = "Dashboard"
WORK_ITEMS: Final = "WorkItems"
CONTACT_LOG: Final = "ContactLog"
DIGESTS: Final = "Digests"
TABLES: Final = (CUSTOMERS, OPPORTUNITIES, DELIVERIES, SUPPRESSIONS, APPROVALS, RATE_LIMITS, TASKS, JOURNEY_HISTORY,
                 DASHBOARD, WORK_ITEMS, CONTACT_LOG, DIGESTS)

# Action channels and the queue each one is delivered from.
CHANNEL_QUEUES: Final = {Channel.TEAMS: TEAMS, Channel.EMAIL: EMAIL, Channel.CRM_TASK: CRM_TASKS}
