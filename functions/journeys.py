"""GET /api/customers/{id}/journey: a customer's journey stage and its history (Functions key)."""

import azure.functions as func

from functions.http import handle_errors, json_response
from shared.container import get_container
from shared.journeys.history import journey_view

bp = func.Blueprint()


@bp.function_name("customer_journey")
@bp.route(route="customers/{id}/journey", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def customer_journey(req: func.HttpRequest) -> func.HttpResponse:
    container = get_container()
    return json_response(journey_view(container.customers, container.journey_history, req.route_params["id"]))
