"""GET /api/dashboard[?days=7][&format=html]: opportunities, conversion, journey stages, revenue, delivery health."""

from datetime import UTC, datetime

import azure.functions as func

from functions.http import handle_errors, json_response
from shared.container import get_container
from shared.dashboard.report import build_dashboard, dashboard_html
from shared.domain.errors import InvalidInput, Location

bp = func.Blueprint()


@bp.function_name("dashboard")
@bp.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    days = req.params.get("days", "7")
    if not days.isdigit() or not 1 <= int(days) <= 90:
        raise InvalidInput("days must be a whole number from 1 to 90", Location(field="days"))
    c = get_container()
    data = build_dashboard(c.storage, c.ledger, c.approval_store, c.broker, datetime.now(UTC), int(days),
                           journey=c.journey, ruleset=c.ruleset)
    wants_html = req.params.get("format") == "html" or "text/html" in (req.headers.get("accept") or "")
    if wants_html:
        return func.HttpResponse(dashboard_html(data), mimetype="text/html", charset="utf-8",
                                 headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
    return json_response(data)
