"""GET|POST /api/unsubscribe?token=…: signed, expiring one-click unsubscribe (anonymous; the token is the key)."""

from __future__ import annotations

from urllib.parse import parse_qs

import azure.functions as func

from functions.http import handle_errors, html_response, status_for
from shared.container import get_container
from shared.delivery import unsubscribe as domain
from shared.domain.errors import CrmflowError, InvalidInput, Unauthorized
from shared.web import pages
from shared.web import unsubscribe as unsubscribe_pages

bp = func.Blueprint()


def _token(req: func.HttpRequest) -> str:
    token = req.params.get("token")
    if not token and req.method == "POST":
        form = parse_qs(req.get_body().decode("utf-8", errors="replace"))
        token = (form.get("token") or [""])[0]
    if not token:
        raise InvalidInput("the link has no token")
    return token


@bp.function_name("unsubscribe")
@bp.route(route="unsubscribe", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def unsubscribe(req: func.HttpRequest) -> func.HttpResponse:
    container = get_container()
    settings = container.settings
    token = _token(req)
    locale = address = None
    try:
        stored = container.customers.get(domain.customer_id_of(settings, token))
        if stored:
            locale, address = stored.customer.locale, stored.customer.email
    except CrmflowError:
        pass  # a bad token is reported below, in the visitor's language
    accept = req.headers.get("Accept-Language") or settings.default_locale
    lang = pages.language(locale, *accept.split(","))
    try:
        if req.method == "POST":
            one_click = "List-Unsubscribe=One-Click" in req.get_body().decode("utf-8", "replace")
            domain.unsubscribe(settings, container.suppressions, token, "one-click" if one_click else "link",
                               lambda customer_id: address)
            page = unsubscribe_pages.done_page(lang)
        else:
            domain.customer_id_of(settings, token)  # a bad or expired link fails here, before any button is shown
            page = unsubscribe_pages.confirmation_page(token, lang)
    except (InvalidInput, Unauthorized) as exc:
        page = unsubscribe_pages.invalid_link_page(status_for(exc), lang)
    return html_response(page)
