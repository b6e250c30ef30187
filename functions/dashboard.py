"""The dashboard: GET /api/dashboard (page or JSON), outcomes from its work list, and the snapshot timer.

The routes are anonymous at the Functions level and authenticate in `shared/web/dashboard_auth.py`
(`DASHBOARD_AUTH`: App Service Authentication's signed-in user, or the function key).
"""

import logging
from datetime import UTC, datetime

import azure.functions as func

from functions.http import handle_errors, json_response
from shared.container import get_container
from shared.dashboard.service import DashboardQuery, page_headers
from shared.domain.errors import NotFound
from shared.web.dashboard_auth import authenticate, check_action

log = logging.getLogger("crmflow.functions.dashboard")
bp = func.Blueprint()


@bp.function_name("dashboard")
@bp.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    c = get_container()
    viewer = authenticate(c.settings, req.headers, req.params)
    query = DashboardQuery.from_params(req.params)
    accept = req.headers.get("accept") or ""
    wants_html = query.format == "html" or (query.format is None and "text/html" in accept)
    if not wants_html:
        return json_response(c.dashboard.data(query, datetime.now(UTC)), headers={"Cache-Control": "no-store"})
    html, nonce = c.dashboard.page(query, viewer, req.headers.get("accept-language"), datetime.now(UTC))
    return func.HttpResponse(html, mimetype="text/html", charset="utf-8", headers=page_headers(nonce))


@bp.function_name("dashboard_outcome")
@bp.route(route="dashboard/opportunities/{id}", methods=["PATCH"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def dashboard_outcome(req: func.HttpRequest) -> func.HttpResponse:
    """The work list's outcome buttons: the body of PATCH /api/opportunities/{id}, recorded as the rep's outcome
    (the same path as the card's link), with the signed-in user as who decided."""
    c = get_container()
    opportunity_id = req.route_params["id"]
    now = datetime.now(UTC)
    viewer = check_action(c.settings, req.headers, opportunity_id, now)
    updated = c.dashboard.record_outcome(opportunity_id, req.get_body(), viewer, now)
    return json_response(updated.to_dict(), headers={"Cache-Control": "no-store"})


@bp.function_name("dashboard_configure")
@bp.route(route="dashboard/configure", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def dashboard_configure(req: func.HttpRequest) -> func.HttpResponse:
    """The configurable Teams tab's settings page: the team view, optionally one type."""
    c = get_container()
    authenticate(c.settings, req.headers, req.params)
    html, nonce = c.dashboard.configure_page(req.params.get("lang"), req.headers.get("accept-language"),
                                             datetime.now(UTC))
    return func.HttpResponse(html, mimetype="text/html", charset="utf-8", headers=page_headers(nonce))


@bp.function_name("dashboard_tab")
@bp.route(route="teams/tab", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def dashboard_tab(req: func.HttpRequest) -> func.HttpResponse:
    """Where the Teams tabs point: no data here (it is reachable before sign-in); it opens the dashboard, first
    running Teams' sign-in pop-up when App Service Authentication has no session yet."""
    html, target, nonce = get_container().dashboard.tab(req.params, req.headers.get("accept-language"))
    if html is None:
        return func.HttpResponse(status_code=302, headers={"Location": target, "Cache-Control": "no-store"})
    return func.HttpResponse(html, mimetype="text/html", charset="utf-8", headers=page_headers(nonce))


@bp.function_name("dashboard_teams_js")
@bp.route(route="teams/teams.js", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def dashboard_teams_js(req: func.HttpRequest) -> func.HttpResponse:
    """Microsoft's Teams JavaScript SDK (a public library, served from the app so no CDN is needed)."""
    script = get_container().dashboard.teams_js()
    if script is None:
        raise NotFound("the Teams JavaScript SDK is not deployed: run `make install` before publishing")
    return func.HttpResponse(script, mimetype="application/javascript", charset="utf-8",
                             headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})


@bp.function_name("dashboard_refresh")
@bp.timer_trigger(arg_name="timer", schedule="%DASHBOARD_REFRESH_SCHEDULE%", use_monitor=True)
def dashboard_refresh(timer: func.TimerRequest) -> None:
    """Rewrite the snapshot and the work list (also done at the end of `crmflow sweep`)."""
    report = get_container().dashboard.refresh(datetime.now(UTC))
    log.info("dashboard snapshot: %d ledger rows, %d open, %d work rows written, %d deleted, %d transactions, "
             "%.1f s", report.ledger_rows, report.open_items, report.written, report.deleted, report.transactions,
             report.seconds)
