"""GET|POST /api/approvals/{id}: review a held message and approve or reject it (anonymous: the signed token in the
link is the credential; in Azure, App Service authentication also asks the rep to sign in).

Browsers get localised HTML pages; a JSON request (`Content-Type: application/json`, or `Accept:
application/json` on GET) gets JSON. Errors map to status codes through functions/http.py either way.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import azure.functions as func

from functions.http import form_fields, handle_errors, html_response, json_response, status_for, wants_json
from shared.approvals.flow import AlreadyDecided, Approval
from shared.container import get_container
from shared.domain.errors import CrmflowError
from shared.web import approvals as approval_pages
from shared.web.pages import language

log = logging.getLogger(__name__)
bp = func.Blueprint()


def _form(req: func.HttpRequest) -> dict[str, str]:
    """POST fields (text values only: a decision and a token)."""
    return {k: v for k, v in form_fields(req).items() if isinstance(v, str)}


def _lang(container, approval: Approval | None, req: func.HttpRequest) -> str:
    """The customer's language (the mail's locale, else the customer record), else the browser's."""
    if approval is not None:
        return language(container.approvals.locale_of(approval) or container.settings.default_locale)
    accept = req.headers.get("Accept-Language") or container.settings.default_locale
    return language(accept.split(",")[0])


@bp.function_name("approvals")
@bp.route(route="approvals/{id}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def approvals(req: func.HttpRequest) -> func.HttpResponse:
    container = get_container()
    flow = container.approvals
    now = datetime.fromtimestamp(container.clock(), UTC)
    approval_id = req.route_params.get("id", "")
    as_json = wants_json(req)
    approval = None
    try:
        if req.method == "GET":
            token = req.params.get("token") or ""
            approval = flow.review(approval_id, token, now)
            if as_json:
                return json_response(approval.to_dict(), headers=dict(approval_pages.HEADERS))
            return html_response(approval_pages.review_page(approval, token, _lang(container, approval, req)))
        fields = _form(req)
        # App Service authentication names the signed-in rep (and strips the header from callers); without it on,
        # anybody can send the header, so it is ignored. Kept on the record as who decided (never logged).
        decided_by = (req.headers.get("X-MS-CLIENT-PRINCIPAL-NAME") or None) \
            if container.settings.app_service_auth_enabled else None
        approval = flow.decide(approval_id, fields.get("token"), (fields.get("decision") or "").lower(), now,
                               decided_by)
        if as_json:
            return json_response(approval.to_dict(), headers=dict(approval_pages.HEADERS))
        return html_response(approval_pages.decided_page(approval, _lang(container, approval, req)))
    except CrmflowError as exc:
        if as_json:
            raise  # handle_errors answers JSON with the mapped status
        if approval is None and isinstance(exc, AlreadyDecided):
            try:  # the token was valid (decide() checked it): answer in the customer's language
                approval = flow.store.get(approval_id)
            except CrmflowError:
                approval = None
        lang = _lang(container, approval, req)
        if isinstance(exc, AlreadyDecided):
            return html_response(approval_pages.already_page(exc.status, lang))
        return html_response(approval_pages.error_page(status_for(exc), lang))


@bp.function_name("approvals_housekeeping")
@bp.timer_trigger(arg_name="timer", schedule="%SWEEP_SCHEDULE%", use_monitor=True)
def approvals_housekeeping(timer: func.TimerRequest) -> None:
    """Daily: expire unanswered approvals (their opportunities become suppressed), finish interrupted approvals."""
    container = get_container()
    counts = container.approvals.housekeeping(datetime.fromtimestamp(container.clock(), UTC))
    log.info("approvals: %d expired, %d approved ones published after an interruption", counts["expired"],
             counts["finished"])
