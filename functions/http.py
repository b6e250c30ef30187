"""The one place where domain errors become HTTP status codes."""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable
from urllib.parse import parse_qs

import azure.functions as func

from shared.domain import errors
from shared.web.pages import Page

log = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[errors.CrmflowError], int], ...] = (
    (errors.PayloadTooLarge, 413),
    (errors.InvalidInput, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.Throttled, 429),
    (errors.ConfigError, 500),
    (errors.RetryableError, 503),
    (errors.PermanentError, 400),
)


def status_for(error: errors.CrmflowError) -> int:
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 500


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, ensure_ascii=False, default=str), status_code=status,
                             mimetype="application/json", charset="utf-8", headers=headers)


def html_response(page: Page) -> func.HttpResponse:
    """A rendered page (`shared/web`) with its status and headers."""
    return func.HttpResponse(page.html, status_code=page.status, mimetype="text/html", charset="utf-8",
                             headers=dict(page.headers))


def error_response(error: errors.CrmflowError) -> func.HttpResponse:
    status = status_for(error)
    headers = {}
    if isinstance(error, errors.Throttled):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_seconds)))
    return json_response(error.to_dict(), status, headers)


def handle_errors(handler: Callable[..., func.HttpResponse]) -> Callable[..., func.HttpResponse]:
    """Wrap an HTTP function: domain errors → JSON error with the mapped status; anything else → 500."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs) -> func.HttpResponse:
        try:
            return handler(*args, **kwargs)
        except errors.CrmflowError as exc:
            log.warning("%s: %s", type(exc).__name__, exc.message if status_for(exc) >= 500 else type(exc).__name__)
            return error_response(exc)
        except Exception:
            log.exception("unhandled error in %s", handler.__name__)
            return json_response({"error": "InternalError", "message": "internal error", "retryable": True}, 500)

    return wrapper


# --- the small pages answering signed links (approvals, opportunity outcomes) --------------------------------------
def wants_json(req: func.HttpRequest) -> bool:
    """JSON for API callers (`Content-Type: application/json` on POST, `Accept: application/json` on GET)."""
    if req.method == "POST":
        return (req.headers.get("Content-Type") or "").lower().startswith("application/json")
    accept = (req.headers.get("Accept") or "").lower()
    return "application/json" in accept and "text/html" not in accept


def form_fields(req: func.HttpRequest) -> dict:
    """POST fields from JSON (values as sent) or a urlencoded form; a token in the query string counts too."""
    fields: dict = {}
    body = req.get_body()
    if body:
        if wants_json(req):
            try:
                fields = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise errors.InvalidInput("the body is not JSON") from None
            if not isinstance(fields, dict):
                raise errors.InvalidInput("the body must be a JSON object")
        else:
            fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", errors="replace")).items()}
    fields.setdefault("token", req.params.get("token") or "")
    return fields
