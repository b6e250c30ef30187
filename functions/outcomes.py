"""GET|POST /api/opportunities/{id}/outcome: the rep answers an opportunity card (in progress / won / not now).

Anonymous at the Functions level: the signed token in the card's link is the credential. Browsers get the localised
page; a JSON request (`Content-Type: application/json`, or `Accept: application/json` on GET) gets JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from functions.http import form_fields, handle_errors, html_response, json_response, status_for, wants_json
from shared.container import get_container
from shared.domain.errors import Conflict, CrmflowError
from shared.opportunities import outcomes
from shared.opportunities.ledger import Opportunity
from shared.web import outcome_pages as pages

bp = func.Blueprint()


def _html(page: pages.Page) -> func.HttpResponse:
    return html_response(page)


@bp.function_name("opportunity_outcome")
@bp.route(route="opportunities/{id}/outcome", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def opportunity_outcome(req: func.HttpRequest) -> func.HttpResponse:
    container = get_container()
    now = datetime.fromtimestamp(container.clock(), UTC)
    opportunity_id = req.route_params.get("id", "")
    as_json = wants_json(req)
    found: Opportunity | None = None
    lang = pages.language(req.headers.get("Accept-Language") or container.settings.default_locale)
    try:
        fields = form_fields(req) if req.method == "POST" else {"token": req.params.get("token") or ""}
        found = outcomes.authorize(container.settings, container.ledger, opportunity_id, fields.get("token"), now)
        customer = container.customers.get(found.customer_id)
        if customer is not None and customer.customer.locale:
            lang = pages.language(customer.customer.locale)
        if req.method == "GET":
            if as_json:
                return json_response(found.to_dict(), headers=dict(pages.HEADERS))
            name = customer.customer.name if customer is not None else None
            return _html(pages.outcome_page(found, fields["token"], lang, name, req.params.get("decision")))
        choice = outcomes.parse_decision(fields.get("decision"), fields.get("amount"))
        # App Service authentication names the signed-in rep in Azure; kept on the row as who decided.
        by = req.headers.get("X-MS-CLIENT-PRINCIPAL-NAME") or found.owner_email
        updated = outcomes.record(container.ledger, opportunity_id, choice, now, by)
        if as_json:
            return json_response(updated.to_dict(), headers=dict(pages.HEADERS))
        return _html(pages.recorded_page(choice.decision, lang))
    except CrmflowError as exc:
        if as_json:
            raise  # handle_errors answers JSON with the mapped status
        if isinstance(exc, Conflict):
            return _html(pages.closed_page(container.ledger.get(opportunity_id) if found else None, lang))
        return _html(pages.error_page(status_for(exc), lang))
