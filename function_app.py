"""Azure Functions entry point (v2 programming model): registers the Blueprints from functions/."""

import azure.functions as func

from functions import health, senders, unsubscribe

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

for blueprint in (health.bp, senders.bp, unsubscribe.bp):
    app.register_functions(blueprint)
