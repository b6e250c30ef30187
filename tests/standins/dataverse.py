"""A local stand-in for the Dataverse Web API and its token endpoint (127.0.0.1, free port).

Follows the documented behaviour crmflow relies on: Bearer tokens (401 once revoked), `GET <set>(<id>)` with
`_<lookup>_value` columns and their annotations when `Prefer: odata.include-annotations="*"`, `$expand=owninguser`,
`$filter` clauses joined by `and` (`<column> eq '<text>'`, `<column> eq <guid>`, `startswith(<column>,'<text>')`,
`contains(<column>,'<text>')`) with `$top`, `POST tasks` answering 204 + `OData-EntityId` (a `<lookup>@odata.bind`
of `/<set>(<id>)` is read back as `_<lookup>_value`), `PATCH <set>(<id>)` (204; with `If-Match: *` a missing row is
404 instead of an upsert), 404 for missing rows, and injectable failures (429 + Retry-After, 5xx).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import requests

API = "/api/data/v9.2"


class DataverseStandIn:
    def __init__(self):
        self.tables: dict[str, dict[str, dict]] = {"contacts": {}, "accounts": {}, "opportunities": {},
                                                   "systemusers": {}, "tasks": {}}
        self.valid_tokens: set[str] = set()
        # Served (and consumed) before anything else, to the next request of that method (any when None).
        self.failures: list[tuple[int, dict[str, str], str | None]] = []
        self.requests: list[tuple[str, str]] = []
        self.tokens_issued = 0
        self.lookup_delay = 0.0  # seconds each `GET <set>?$filter` waits (widens race windows in tests)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> DataverseStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # --- test controls ------------------------------------------------------------------------------------------
    def get_token(self, scope: str) -> str:
        """A token provider (what msal would do): client-credentials POST to the stand-in token endpoint."""
        response = requests.post(f"{self.url}/tenant/oauth2/v2.0/token", timeout=5,
                                 data={"grant_type": "client_credentials", "scope": scope})
        response.raise_for_status()
        return response.json()["access_token"]

    def revoke_tokens(self) -> None:
        with self._lock:
            self.valid_tokens.clear()

    def fail_next(self, status: int, method: str | None = None, **headers: str) -> None:
        self.failures.append((status, headers, method))

    def add(self, table: str, row_id: str, row: dict) -> None:
        self.tables[table][row_id.lower()] = row

    # --- HTTP -----------------------------------------------------------------------------------------------
    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, body: object | None = None, headers: dict | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if body is not None:
                    self.send_header("Content-Type", "application/json; odata.metadata=minimal")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                with standin._lock:
                    ok = token in standin.valid_tokens
                if not ok:
                    self._send(401, {"error": {"code": "0x80072560", "message": "token expired"}},
                               {"WWW-Authenticate": "Bearer"})
                return ok

            def _failure(self) -> bool:
                with standin._lock:
                    index = next((i for i, f in enumerate(standin.failures) if f[2] in (None, self.command)), None)
                    failure = standin.failures.pop(index) if index is not None else None
                if failure:
                    status, headers, _ = failure
                    self._send(status, {"error": {"code": "0x0", "message": "injected"}}, headers)
                return failure is not None

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = urlsplit(self.path).path
                standin.requests.append(("POST", self.path))
                if path.endswith("/oauth2/v2.0/token"):
                    token = f"token-{uuid.uuid4().hex}"
                    with standin._lock:
                        standin.valid_tokens.add(token)
                        standin.tokens_issued += 1
                    return self._send(200, {"token_type": "Bearer", "expires_in": 3599, "access_token": token})
                if self._failure() or not self._authorised():
                    return None
                if path == f"{API}/tasks":
                    row = _with_lookups(json.loads(body))
                    task_id = str(uuid.uuid4())
                    row["activityid"] = task_id
                    standin.add("tasks", task_id, row)
                    return self._send(204, None, {"OData-EntityId": f"{standin.url}{API}/tasks({task_id})"})
                return self._send(404, {"error": {"code": "0x80060888", "message": "Resource not found"}})

            def do_PATCH(self):
                """Upsert `<set>(<id>)`; `If-Match: *` only updates (404 when missing), `If-None-Match: *` only
                creates (412 when the row exists), as Dataverse's "prevent create" / "prevent update"."""
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                standin.requests.append(("PATCH", self.path))
                if self._failure() or not self._authorised():
                    return None
                single = re.fullmatch(rf"{API}/(\w+)\(([0-9a-fA-F-]+)\)", urlsplit(self.path).path)
                if not single or single[1] not in standin.tables:
                    return self._send(404, {"error": {"code": "0x80060888", "message": "Resource not found"}})
                table, row_id = single[1], single[2].lower()
                with standin._lock:  # Dataverse checks and writes atomically
                    exists = row_id in standin.tables[table]
                    if not exists and self.headers.get("If-Match") == "*":
                        return self._send(404, {"error": {"code": "0x80040217", "message": "Does Not Exist"}})
                    if exists and self.headers.get("If-None-Match") == "*":
                        return self._send(412, {"error": {
                            "code": "0x80040237", "message": "A record with matching key values already exists."}})
                    if exists:
                        standin.tables[table][row_id].update(_with_lookups(json.loads(body or b"{}")))
                        return self._send(204)
                    row = _with_lookups(json.loads(body or b"{}"))
                    row["activityid" if table == "tasks" else f"{table[:-1]}id"] = row_id
                    standin.tables[table][row_id] = row
                return self._send(204, None, {"OData-EntityId": f"{standin.url}{API}/{table}({row_id})"})

            def do_GET(self):
                standin.requests.append(("GET", self.path))
                if self._failure() or not self._authorised():
                    return None
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                single = re.fullmatch(rf"{API}/(\w+)\(([0-9a-fA-F-]+)\)", parts.path)
                if single:
                    row = standin.tables.get(single[1], {}).get(single[2].lower())
                    if row is None:
                        return self._send(404, {"error": {"code": "0x80040217", "message": "Does Not Exist"}})
                    return self._send(200, self._shape(row, query))
                listing = re.fullmatch(rf"{API}/(\w+)", parts.path)
                if listing and standin.lookup_delay:
                    time.sleep(standin.lookup_delay)
                if listing and listing[1] in standin.tables:
                    rows = [r for r in standin.tables[listing[1]].values()
                            if _matches(r, unquote(query.get("$filter", "")))]
                    rows = rows[: int(query.get("$top", "5000"))]
                    return self._send(200, {"value": rows})
                return self._send(404, {"error": {"code": "0x80060888", "message": "Resource not found"}})

            def _shape(self, row: dict, query: dict) -> dict:
                shaped = {k: v for k, v in row.items() if not k.startswith("$")}
                annotate = "odata.include-annotations" in (self.headers.get("Prefer") or "")
                if not annotate:
                    shaped = {k: v for k, v in shaped.items() if "@" not in k}
                if "owninguser" in query.get("$expand", ""):
                    owner = standin.tables["systemusers"].get(str(row.get("_ownerid_value", "")).lower())
                    shaped["owninguser"] = owner
                return shaped

        return Handler


_CLAUSE = re.compile(r"(?P<eq>\w+) eq '(?P<text>(?:[^']|'')*)'|(?P<eqid>\w+) eq (?P<guid>[0-9a-fA-F-]{36})"
                     r"|(?P<fn>startswith|contains)\((?P<col>\w+),'(?P<arg>(?:[^']|'')*)'\)")


def _matches(row: dict, expression: str) -> bool:
    """Every clause of an `a and b and c` filter holds for the row (the subset of OData crmflow sends)."""
    for clause in _CLAUSE.finditer(expression):
        if clause["eq"]:
            if row.get(clause["eq"]) != clause["text"].replace("''", "'"):
                return False
        elif clause["eqid"]:
            if str(row.get(clause["eqid"], "")).lower() != clause["guid"].lower():
                return False
        else:
            value, wanted = str(row.get(clause["col"]) or ""), clause["arg"].replace("''", "'")
            if not (value.startswith(wanted) if clause["fn"] == "startswith" else wanted in value):
                return False
    return True


def _with_lookups(row: dict) -> dict:
    """`<lookup>@odata.bind: /set(<id>)` also read back as `_<lookup>_value`, as Dataverse stores them."""
    for key, value in list(row.items()):
        bound = re.fullmatch(r"(\w+)@odata\.bind", key)
        target = re.fullmatch(r"/\w+\(([0-9a-fA-F-]+)\)", str(value))
        if bound and target:
            # regardingobjectid_contact binds the polymorphic lookup regardingobjectid
            lookup = bound[1].split("_")[0] if bound[1].startswith("regardingobjectid_") else bound[1]
            row[f"_{lookup}_value"] = target[1].lower()
    return row
