"""Azure Functions entry point (v2 programming model): registers the Blueprints from functions/."""

import azure.functions as func

from functions import (
    approvals,
    crm_tasks,
    crm_webhooks,
    dashboard,
    health,
    housekeeping,
    journeys,
    openapi,
    opportunities,
    outcomes,
    pipeline,
    senders,
    unsubscribe,
)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

for blueprint in (health.bp, pipeline.bp, senders.bp, unsubscribe.bp, crm_webhooks.bp, crm_tasks.bp, opportunities.bp,
                  outcomes.bp, approvals.bp, dashboard.bp, housekeeping.bp, journeys.bp, openapi.bp):
    app.register_functions(blueprint)
