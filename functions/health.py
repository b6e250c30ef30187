"""GET /api/health: the app is configured and Table Storage answers."""

import azure.functions as func

from functions.http import handle_errors, json_response
from shared.container import get_container
from shared.ops.health import check_health

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def health(req: func.HttpRequest) -> func.HttpResponse:
    report = check_health(get_container())
    return json_response(report, 200 if report["status"] == "ok" else 503)
