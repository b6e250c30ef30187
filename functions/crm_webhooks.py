"""POST /api/crm/{dataverse|hubspot|salesforce|zoho|generic}: verify, queue the canonical events, answer 202.

Thin adapters: each turns the HTTP request into a `WebhookRequest` and calls `WebhookIntake.receive`; errors map
to JSON 4xx/5xx in `functions.http`. Dataverse (WebhookKey auth) and Salesforce (which signs nothing: its outbound
message endpoint URL carries the key) authenticate with the Functions key as `?code=`, so their routes are FUNCTION
level; the others are anonymous and verify their own signature or token.
"""

import azure.functions as func

from functions.http import handle_errors, json_response
from shared.container import get_container
from shared.crm.common import WebhookRequest
from shared.crm.salesforce import ACK

bp = func.Blueprint()


def _receive(source: str, req: func.HttpRequest) -> func.HttpResponse:
    request = WebhookRequest.build(req.method, req.url, req.get_body(), dict(req.headers), dict(req.params))
    receipt = get_container().crm_intake.receive(source, request)
    return json_response(receipt.to_dict(), 202)


@bp.function_name("crm_dataverse")
@bp.route(route="crm/dataverse", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def crm_dataverse(req: func.HttpRequest) -> func.HttpResponse:
    return _receive("dataverse", req)


@bp.function_name("crm_hubspot")
@bp.route(route="crm/hubspot", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def crm_hubspot(req: func.HttpRequest) -> func.HttpResponse:
    return _receive("hubspot", req)


@bp.function_name("crm_salesforce")
@bp.route(route="crm/salesforce", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def crm_salesforce(req: func.HttpRequest) -> func.HttpResponse:
    request = WebhookRequest.build(req.method, req.url, req.get_body(), dict(req.headers), dict(req.params))
    receipt = get_container().crm_intake.receive("salesforce", request)
    # Salesforce retries until it reads <Ack>true</Ack> in a 200 SOAP response; a JSON 202 would be retried for
    # 24 hours. The receipt travels in headers instead.
    return func.HttpResponse(ACK, status_code=200, mimetype="text/xml", charset="utf-8",
                             headers={"X-Crmflow-Accepted": str(receipt.accepted)})


@bp.function_name("crm_zoho")
@bp.route(route="crm/zoho", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def crm_zoho(req: func.HttpRequest) -> func.HttpResponse:
    return _receive("zoho", req)


@bp.function_name("crm_generic")
@bp.route(route="crm/generic", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def crm_generic(req: func.HttpRequest) -> func.HttpResponse:
    return _receive("generic", req)
