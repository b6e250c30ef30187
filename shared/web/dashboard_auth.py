"""Who may see the dashboard, and how its page may record an outcome.

The dashboard routes are anonymous at the Functions level (a Teams tab cannot carry a function key, and Microsoft's
pattern for signed-in users is App Service Authentication in front of anonymous functions); this module is the
check, chosen by `DASHBOARD_AUTH`:

- `app_service`: App Service Authentication (Entra ID) signs every caller in before the request reaches the app, and
  strips client-sent `X-MS-CLIENT-PRINCIPAL-*` headers, so `X-MS-CLIENT-PRINCIPAL-NAME` is the signed-in user. It is
  trusted only in this mode: without App Service Authentication anybody can send that header.
- `key`: the caller presents `FUNCTIONS_KEY` (`?code=` or `x-functions-key`); with no key configured nobody gets in.
- `open`: no check (the local stack on 127.0.0.1 only, where `crmflow serve` runs without a key).

Outcome buttons never see a function key. Each work-list row carries an action token the page was given: an HMAC
(`UNSUBSCRIBE_SIGNING_KEY`, purpose `dashboard-outcome`) over the viewer and that one opportunity id, valid for 12
hours. The page sends it in the `X-Crmflow-Action` header of a JSON `PATCH`: a cross-site form cannot set a custom
header or a JSON content type, and a cross-site script would need a CORS preflight the app never grants. In
`app_service` mode the signed-in user must also be the one the token was issued to.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain.errors import ConfigError, InvalidInput, Unauthorized
from shared.domain.signing import sign, verify
from shared.settings import Settings

ACTION_PURPOSE = "dashboard-outcome"
ACTION_LIFETIME = timedelta(hours=12)
ACTION_HEADER = "x-crmflow-action"
PRINCIPAL_HEADER = "x-ms-client-principal-name"


KEY_HOLDER, LOCAL_USER = "function-key", "local"  # who decided, in the modes that name nobody


@dataclass(frozen=True)
class Viewer:
    """The caller of a dashboard route: `principal` is the signed-in user (App Service Authentication only);
    `mode` is the `DASHBOARD_AUTH` mode that let them in."""

    principal: str | None = None
    mode: str = "open"

    @property
    def id(self) -> str:
        return (self.principal or "key").lower()

    @property
    def decider(self) -> str:
        """Who an outcome recorded from the page names: the signed-in user, else the key mode's holder (or the
        local user of the open mode)."""
        if self.principal:
            return self.principal
        return KEY_HOLDER if self.mode == "key" else LOCAL_USER


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def authenticate(settings: Settings, headers: Mapping[str, str], params: Mapping[str, str]) -> Viewer:
    """The viewer of a dashboard request, or Unauthorized (before anything is read)."""
    mode = settings.dashboard_auth
    if mode == "app_service":
        principal = (_header(headers, PRINCIPAL_HEADER) or "").strip()
        if not principal:
            raise Unauthorized("sign in first: App Service Authentication did not identify the caller")
        return Viewer(principal, mode)
    if mode == "key":
        if not settings.functions_key:
            raise Unauthorized("the dashboard is closed: set FUNCTIONS_KEY, or DASHBOARD_AUTH=app_service behind "
                               "App Service Authentication")
        presented = params.get("code") or _header(headers, "x-functions-key") or ""
        if not hmac.compare_digest(presented.encode("utf-8"), settings.functions_key.encode("utf-8")):
            raise Unauthorized("a valid function key is required (?code= or x-functions-key)")
    return Viewer(mode=mode)


def action_token(settings: Settings, viewer: Viewer, opportunity_id: str, now: datetime) -> str | None:
    """The token that lets this viewer's page record an outcome for one opportunity (None: no signing key)."""
    if not settings.unsubscribe_signing_key:
        return None
    return sign(settings, ACTION_PURPOSE, f"{viewer.id}|{opportunity_id}", now, ACTION_LIFETIME)


def check_action(settings: Settings, headers: Mapping[str, str], opportunity_id: str, now: datetime) -> Viewer:
    """Authorise an outcome PATCH from the page: the token must name this opportunity (and, signed in, this user)."""
    if not settings.unsubscribe_signing_key:
        raise ConfigError("app setting UNSUBSCRIBE_SIGNING_KEY is required for outcome actions")
    if (_header(headers, "sec-fetch-site") or "same-origin") not in ("same-origin", "none"):
        raise Unauthorized("outcome actions come from the dashboard page itself")
    if "application/json" not in (_header(headers, "content-type") or ""):
        raise InvalidInput("send the outcome as JSON (Content-Type: application/json)")
    token = _header(headers, ACTION_HEADER)
    if not token:
        raise Unauthorized(f"the {ACTION_HEADER} header is required")
    subject = verify(settings, ACTION_PURPOSE, token, now)
    viewer_id, _, token_opportunity = subject.partition("|")
    if token_opportunity != opportunity_id:
        raise Unauthorized("the action token is for another opportunity")
    if settings.dashboard_auth == "app_service":
        principal = (_header(headers, PRINCIPAL_HEADER) or "").strip().lower()
        if not principal or principal != viewer_id:
            raise Unauthorized("the action token was issued to another user")
        return Viewer(principal, "app_service")
    return Viewer(mode=settings.dashboard_auth)
