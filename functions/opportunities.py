"""GET /api/opportunities (filters) and PATCH /api/opportunities/{id} (status and amount won)."""

import azure.functions as func

from functions.http import handle_errors, json_response
from shared.container import get_container
from shared.opportunities.queries import change_status, list_opportunities

bp = func.Blueprint()


@bp.function_name("opportunities_list")
@bp.route(route="opportunities", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def opportunities_list(req: func.HttpRequest) -> func.HttpResponse:
    found = list_opportunities(get_container().ledger, dict(req.params))
    return json_response({"count": len(found), "items": [o.to_dict() for o in found]})


@bp.function_name("opportunities_update")
@bp.route(route="opportunities/{id}", methods=["PATCH"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def opportunities_update(req: func.HttpRequest) -> func.HttpResponse:
    updated = change_status(get_container().ledger, req.route_params["id"], req.get_body())
    return json_response(updated.to_dict())
