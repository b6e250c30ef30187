"""GET /api/openapi.json: the OpenAPI 3 description of every HTTP route (anonymous, like /api/health)."""

import azure.functions as func

from functions.http import handle_errors
from shared.web.openapi import document_text

bp = func.Blueprint()


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(document_text(), mimetype="application/json", charset="utf-8",
                             headers={"Cache-Control": "public, max-age=300"})
