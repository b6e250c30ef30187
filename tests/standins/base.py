"""The stand-in server skeleton: routing, request log, fault injection, bearer-token checks."""

from __future__ import annotations

import json
import re
import secrets
import socket
import ssl
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class Fault:
    """What a route does instead of (or after) its normal work, once per injected fault.

    kind: "status" (answer `status` with `headers`/`body`), "timeout" (stall `delay` seconds, then answer normally),
    "reset" (drop the connection before doing anything), "reset_after" (do the work, then drop the connection:
    the client cannot know it succeeded), "late" (do the work, then stall `delay` seconds before answering: a
    client with a shorter read timeout gives up on a request that was carried out)."""

    kind: str = "status"
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: dict | None = None
    delay: float = 0.0


class TokenIssuer:
    """Bearer tokens shared between the token stand-in and the API stand-ins (same process)."""

    def __init__(self, lifetime: float = 3600.0):
        self.lifetime = lifetime
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self.issued = 0

    def issue(self, audience: str) -> tuple[str, float]:
        token = f"{audience[:12]}.{secrets.token_urlsafe(24)}"
        expires = time.time() + self.lifetime
        with self._lock:
            self._tokens[token] = expires
            self.issued += 1
        return token, expires

    def valid(self, token: str | None) -> bool:
        with self._lock:
            return bool(token) and self._tokens.get(token, 0.0) > time.time()

    def expire_all(self) -> None:
        """Every token issued so far is now expired (the next API call answers 401)."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    match: re.Match

    def json(self):
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: dict | str | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


class StandIn:
    """Subclasses call `route(method, pattern, name, handler)`; tests call `inject(name, Fault(...))`."""

    def __init__(self, *, issuer: TokenIssuer | None = None, tls: ssl.SSLContext | None = None):
        self.issuer = issuer
        self.tls = tls
        self._routes: list[tuple[str, re.Pattern, str, Handler, bool]] = []
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._lock = threading.Lock()
        self.log: list[tuple[float, str, str, int]] = []  # (time, route name, path, status)
        self.server: ThreadingHTTPServer | None = None
        # Consulted per request when no injected fault is queued (random fault rates in chaos runs).
        self.chaos: Callable[[str], Fault | None] | None = None

    # --- setup ---------------------------------------------------------------------------------------------
    def route(self, method: str, pattern: str, name: str, handler: Handler, *, auth: bool = True) -> None:
        self._routes.append((method, re.compile(pattern + r"$"), name, handler, auth))

    def inject(self, name: str, *faults: Fault) -> None:
        with self._lock:
            self._faults[name].extend(faults)

    def calls(self, name: str) -> int:
        return sum(1 for entry in self.log if entry[1] == name)

    @property
    def url(self) -> str:
        assert self.server is not None
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> StandIn:
        stand_in = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _any(self) -> None:
                stand_in._handle(self)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        if self.tls:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- request handling ----------------------------------------------------------------------------------
    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(http.path)
        length = int(http.headers.get("Content-Length") or 0)
        body = http.rfile.read(length) if length else b""
        if len(body) < length:  # the client went away mid-request (a killed worker): a real service never saw it
            http.close_connection = True
            return None
        for method, pattern, name, handler, auth in self._routes:
            match = pattern.match(unquote(parts.path))
            if method != http.command or not match:
                continue
            with self._lock:
                fault = self._faults[name].popleft() if self._faults[name] else None
            if fault is None and self.chaos is not None:
                fault = self.chaos(name)
            if fault and fault.kind == "reset":
                return self._reset(http, name, parts.path)
            if fault and fault.kind == "timeout":
                time.sleep(fault.delay)
            if fault and fault.kind == "status":
                return self._send(http, name, parts.path, Response(fault.status, fault.body or {
                    "error": {"code": f"Injected{fault.status}", "message": "injected fault"}}, fault.headers))
            if auth and self.issuer is not None:
                token = (http.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
                if not self.issuer.valid(token):
                    return self._send(http, name, parts.path, Response(401, {"error": {
                        "code": "InvalidAuthenticationToken", "message": "Access token has expired or is not valid"}}))
            request = Request(http.command, parts.path, parse_qs(parts.query), dict(http.headers.items()), body, match)
            response = handler(request)
            if fault and fault.kind == "reset_after":
                return self._reset(http, name, parts.path)
            if fault and fault.kind == "late":
                time.sleep(fault.delay)
            return self._send(http, name, parts.path, response)
        self._send(http, "unrouted", parts.path, Response(404, {"error": {"code": "NotFound", "message": "no route"}}))

    def _send(self, http: BaseHTTPRequestHandler, name: str, path: str, response: Response) -> None:
        body = response.body
        if isinstance(body, dict | list):
            data, ctype = json.dumps(body).encode(), "application/json"
        elif isinstance(body, str):
            data, ctype = body.encode(), "text/plain"
        else:
            data, ctype = body or b"", "application/octet-stream"
        with self._lock:
            self.log.append((time.time(), name, path, response.status))
        http.send_response(response.status)
        http.send_header("Content-Type", response.headers.get("Content-Type", ctype))
        http.send_header("Content-Length", str(len(data)))
        for key, value in response.headers.items():
            if key != "Content-Type":
                http.send_header(key, value)
        http.end_headers()
        http.wfile.write(data)

    def _reset(self, http: BaseHTTPRequestHandler, name: str, path: str) -> None:
        with self._lock:
            self.log.append((time.time(), name, path, 0))
        # SO_LINGER 0: close sends a TCP RST, which the client sees as "connection reset by peer".
        http.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        http.close_connection = True
        http.connection.close()
