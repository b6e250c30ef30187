"""The local Functions host: runs the functions registered on a `FunctionApp`, discovered from it.

Azure Functions Core Tools cannot be installed here, so this stands in for the host on a workstation:
- HTTP triggers on a threaded server bound to 127.0.0.1 (`/<routePrefix>/<route>`, `{param}` route parameters,
  function keys via `?code=` or `x-functions-key` when one is configured; anonymous routes always open); only
  loopback Host headers are answered (DNS rebinding), and no CORS header is ever sent;
- Service Bus queue triggers fed by the container's broker (peek-lock; complete on success, abandon on an exception,
  so `max_delivery_count` dead-letters a poison message, as the Functions host does with autoComplete);
- timer triggers on their NCRONTAB schedules (UTC; `%SETTING%` names resolved from `Settings`).

Every function, route and schedule comes from `app.get_functions()`; nothing is listed a second time. This module
uses the `azure.functions` types only to build the objects a function receives; it calls no Azure service itself.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

from shared.broker.port import ReceivedMessage
from shared.container import Container, set_container
from shared.devtools.ncrontab import Schedule
from shared.domain.errors import ConfigError, CrmflowError
from shared.settings import APP_ROOT, Settings

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 100 * 1024 * 1024  # the Functions host's request size limit
# Host header values the local host answers (any port). Anything else is refused with 421, so a page on another
# site whose DNS name is rebound to 127.0.0.1 cannot read the dashboard or call the routes from a browser.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
_HOST_HEADER = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?$")


def loopback_host(value: str | None) -> bool:
    """True for a Host header naming this machine's loopback: 127.0.0.1, localhost or [::1], with or without a
    port (HTTP/1.1 requires the header; without one, nothing is answered)."""
    match = _HOST_HEADER.match((value or "").strip())
    return bool(match) and match[1].lower() in LOOPBACK_HOSTS
NEVER = "0001-01-01T00:00:00"  # what the Functions host reports as `Last` before a timer's first run
_SETTING_REFERENCE = re.compile(r"^%([^%]+)%$")


# --- discovery --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: str
    methods: frozenset[str] | None  # None: every method
    auth_level: str  # anonymous | function | admin
    arg: str
    call: Callable[..., Any]
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class TimerFunction:
    name: str
    schedule: Schedule
    run_on_startup: bool
    arg: str
    call: Callable[..., Any]


@dataclass(frozen=True)
class QueueFunction:
    name: str
    queue: str
    arg: str
    call: Callable[..., Any]


@dataclass(frozen=True)
class Functions:
    http: tuple[HttpFunction, ...]
    timers: tuple[TimerFunction, ...]
    queues: tuple[QueueFunction, ...]


def app_functions(app: func.FunctionApp) -> list[Any]:
    """`app.get_functions()`, callable more than once.

    get_functions() records every name it validated and rejects them on a second call ("does not have a unique
    function name", azure-functions-python-worker#1867); the Functions worker calls it once per process, tests and
    this host call it again. Forgetting the record before and after keeps the duplicate check within each call and
    leaves the app as a later plain get_functions() expects it.
    """
    app.functions_bindings = None
    try:
        return app.get_functions()
    finally:
        app.functions_bindings = None


def discover(app: func.FunctionApp, settings: Settings) -> Functions:
    """Read every function's trigger from the app; ConfigError for a binding the local host cannot run."""
    http: list[HttpFunction] = []
    timers: list[TimerFunction] = []
    queues: list[QueueFunction] = []
    for function in app_functions(app):
        name = function.get_function_name()
        call = function.get_user_function()
        bindings = [b.get_dict_repr() for b in function.get_bindings()]
        triggers = [b for b in bindings if str(b["type"]).endswith("Trigger")]
        others = [b for b in bindings if b not in triggers and not (b["type"] == "http" and b["name"] == "$return")]
        if len(triggers) != 1 or others:
            raise ConfigError(f"function {name}: the local host runs one trigger and no other bindings; got "
                              f"{[b['type'] for b in bindings]}")
        trigger = triggers[0]
        arg = trigger["name"]
        _check_parameters(name, call, arg)
        kind = trigger["type"]
        if kind == "httpTrigger":
            route = (trigger.get("route") or name).strip("/")
            methods = trigger.get("methods")
            http.append(HttpFunction(
                name, route, frozenset(_enum_text(m).upper() for m in methods) if methods else None,
                _enum_text(trigger.get("authLevel") or "function").lower(), arg, call, route_pattern(route)))
        elif kind == "timerTrigger":
            expression = resolve_setting(str(trigger["schedule"]), settings, name)
            timers.append(TimerFunction(name, Schedule.parse(expression), bool(trigger.get("runOnStartup")), arg, call))
        elif kind == "serviceBusTrigger":
            if trigger.get("topicName") or trigger.get("isSessionsEnabled") or trigger.get("cardinality") == "many":
                raise ConfigError(f"function {name}: the local host runs single-message queue triggers only")
            queues.append(QueueFunction(name, resolve_setting(str(trigger["queueName"]), settings, name), arg, call))
        else:
            raise ConfigError(f"function {name}: the local host does not run {kind} triggers")
    return Functions(tuple(http), tuple(timers), tuple(queues))


def _enum_text(value: Any) -> str:
    return str(getattr(value, "value", value))


def _check_parameters(name: str, call: Callable[..., Any], arg: str) -> None:
    params = inspect.signature(call).parameters
    if arg not in params or any(p != arg and v.default is inspect.Parameter.empty for p, v in params.items()):
        raise ConfigError(f"function {name}: the local host passes only the trigger argument {arg!r}")


def resolve_setting(value: str, settings: Settings, function: str) -> str:
    """`%NAME%` → the value of app setting NAME (declared in shared/settings.py); anything else as is."""
    match = _SETTING_REFERENCE.match(value.strip())
    if not match:
        return value
    setting_name = match[1]
    for f in fields(Settings):
        if f.metadata.get("name") == setting_name:
            resolved = getattr(settings, f.name)
            if resolved is None or resolved == "":
                raise ConfigError(f"function {function}: app setting {setting_name} is empty")
            return str(resolved)
    raise ConfigError(f"function {function}: %{setting_name}% names no setting declared in shared/settings.py")


def route_pattern(route: str) -> re.Pattern[str]:
    """An ASP.NET-style route template as a regex: `{id}`, `{id:int}`, `{id?}`, `{*rest}`."""
    regex = ""
    for segment in route.split("/"):
        param = re.fullmatch(r"\{(\*)?([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]+)?(\?)?\}", segment)
        if not param:
            regex += "/" + re.escape(segment)
        elif param[1]:
            regex += f"(?:/(?P<{param[2]}>.*))?"
        elif param[3]:
            regex += f"(?:/(?P<{param[2]}>[^/]+))?"
        else:
            regex += f"/(?P<{param[2]}>[^/]+)"
    return re.compile("^" + regex + "/?$")


def host_json() -> dict[str, Any]:
    try:
        return json.loads((APP_ROOT / "host.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def route_prefix() -> str:
    """`extensions.http.routePrefix` of host.json (default `api`)."""
    return str(host_json().get("extensions", {}).get("http", {}).get("routePrefix", "api")).strip("/")


def max_lock_renewal() -> timedelta:
    """`extensions.serviceBus.maxAutoLockRenewalDuration` of host.json (default 5 minutes, as in Azure)."""
    text = str(host_json().get("extensions", {}).get("serviceBus", {}).get("maxAutoLockRenewalDuration", "00:05:00"))
    match = re.fullmatch(r"(\d+):(\d{2}):(\d{2})", text.strip())
    return timedelta(hours=int(match[1]), minutes=int(match[2]), seconds=int(match[3])) if match \
        else timedelta(minutes=5)


def invoke(call: Callable[..., Any], arg: str, value: Any) -> Any:
    result = call(**{arg: value})
    if inspect.isawaitable(result):
        result = asyncio.run(result)  # each invocation runs on its own thread: a fresh loop is fine
    return result


# --- trigger payloads --------------------------------------------------------------------------------------------
def servicebus_message(message: ReceivedMessage) -> ServiceBusMessage:
    """What the Functions host hands a Service Bus trigger, from a broker message."""
    props = dict(message.properties)
    return ServiceBusMessage(
        body=message.body.encode("utf-8"), message_id=message.message_id, delivery_count=message.delivery_count,
        enqueued_time_utc=message.enqueued_at, application_properties=props, user_properties=props,
        subject=message.subject, label=message.subject, lock_token=message.lock_token,
        dead_letter_reason=message.dead_letter_reason,
        dead_letter_error_description=message.dead_letter_description,
        trigger_metadata={"MessageId": message.message_id, "DeliveryCount": message.delivery_count,
                          "EnqueuedTimeUtc": message.enqueued_at.isoformat(), "ApplicationProperties": props})


def timer_request(scheduled: datetime, last: datetime | None, following: datetime, now: datetime) -> TimerRequest:
    return TimerRequest(
        past_due=(now - scheduled) > timedelta(seconds=5),
        schedule_status={"Last": last.isoformat() if last else NEVER, "Next": following.isoformat(),
                         "LastUpdated": now.isoformat()},
        schedule={"AdjustForDST": False})


# --- the host ------------------------------------------------------------------------------------------------------
class LocalHost:
    """Runs an app's functions: `with LocalHost(app, container, port=0) as host: ... host.url ...`."""

    def __init__(self, app: func.FunctionApp, container: Container, *, port: int = 7071, bind: str = "127.0.0.1",
                 functions_key: str | None = None, queue_workers: int = 1, receive_wait_seconds: float = 0.5,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.container = container
        self.functions = discover(app, container.settings)
        self.functions_key = functions_key if functions_key is not None else container.settings.functions_key
        self.prefix = route_prefix()
        self._bind = bind
        self._port = port
        self._queue_workers = max(1, queue_workers)
        self._receive_wait = receive_wait_seconds
        self._clock = clock
        self._max_renewal = max_lock_renewal()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    @property
    def url(self) -> str:
        return f"http://{self._bind}:{self.port}"

    def routes(self) -> list[str]:
        """One line per function, like Core Tools prints at start."""
        lines = []
        for fn in self.functions.http:
            methods = ",".join(sorted(fn.methods)) if fn.methods else "*"
            path = "/".join(part for part in (self.prefix, fn.route) if part)
            key = "" if fn.auth_level == "anonymous" or not self.functions_key else "  (function key)"
            lines.append(f"{fn.name}: [{methods}] {self.url}/{path}{key}")
        lines += [f"{fn.name}: timer {fn.schedule.expression} (UTC)" for fn in self.functions.timers]
        lines += [f"{fn.name}: queue {fn.queue}" for fn in self.functions.queues]
        return lines

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> LocalHost:
        set_container(self.container)  # functions reach the stack through get_container()
        self._stop.clear()
        try:
            self._server = ThreadingHTTPServer((self._bind, self._port), _handler_for(self))
        except OSError as exc:
            raise ConfigError(f"local host cannot listen on {self._bind}:{self._port}: {exc.strerror}") from exc
        self._server.daemon_threads = True
        self._spawn("http", self._server.serve_forever)
        for fn in self.functions.queues:
            for i in range(self._queue_workers):
                self._spawn(f"queue:{fn.queue}:{i}", self._run_queue, fn)
        for fn in self.functions.timers:
            self._spawn(f"timer:{fn.name}", self._run_timer, fn)
        log.info("local host on %s with %d functions", self.url, sum(map(len, (
            self.functions.http, self.functions.timers, self.functions.queues))))
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        self._server = None
        set_container(None)

    def serve_forever(self) -> None:
        """Start, then block until Ctrl-C (or `stop()` from another thread); always stops cleanly."""
        if not self._server:
            self.start()
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            log.info("stopping on Ctrl-C")
        finally:
            self.stop()

    def __enter__(self) -> LocalHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"localhost-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    # --- queue triggers ----------------------------------------------------------------------------------------
    def _run_queue(self, fn: QueueFunction) -> None:
        broker = self.container.broker
        while not self._stop.is_set():
            try:
                batch = broker.receive(fn.queue, max_messages=1, max_wait_seconds=self._receive_wait)
            except CrmflowError as exc:
                log.warning("%s: receive from %s failed: %s", fn.name, fn.queue, exc.message)
                self._stop.wait(1.0)
                continue
            for message in batch:
                self.deliver(fn, message)

    def deliver(self, fn: QueueFunction, message: ReceivedMessage) -> bool:
        """Run the function on one message; complete on success, abandon on failure. True when completed."""
        broker = self.container.broker
        started = time.monotonic()
        done = threading.Event()
        self._spawn_renewer(message, done)
        try:
            invoke(fn.call, fn.arg, servicebus_message(message))
        except Exception as exc:
            # Only the type and ids: the message text may quote the body, which may hold personal data.
            log.warning("%s failed on message %s (delivery %d): %s", fn.name, message.message_id,
                        message.delivery_count, type(exc).__name__)
            log.debug("%s failure", fn.name, exc_info=True)
            done.set()
            self._settle(broker.abandon, message)
            return False
        done.set()
        log.info("%s completed message %s in %.0f ms", fn.name, message.message_id,
                 (time.monotonic() - started) * 1000)
        return self._settle(broker.complete, message)

    def _spawn_renewer(self, message: ReceivedMessage, done: threading.Event) -> None:
        """Keep the message locked while its function runs, like the Functions host (up to host.json's limit)."""
        broker = self.container.broker
        interval = broker.lock_duration / 2
        deadline = time.monotonic() + self._max_renewal.total_seconds()

        def keep_locked() -> None:
            while not done.wait(interval) and time.monotonic() < deadline:
                try:
                    broker.renew_lock(message)
                except CrmflowError as exc:
                    log.warning("could not renew the lock of message %s: %s", message.message_id, exc.message)
                    return

        threading.Thread(target=keep_locked, name=f"renew-{message.message_id[:20]}", daemon=True).start()

    @staticmethod
    def _settle(settle: Callable[[ReceivedMessage], None], message: ReceivedMessage) -> bool:
        try:
            settle(message)
        except CrmflowError as exc:  # lock lost: it will be redelivered, and consumers are idempotent
            log.warning("could not settle message %s: %s", message.message_id, exc.message)
            return False
        return True

    # --- timers ----------------------------------------------------------------------------------------------
    def _run_timer(self, fn: TimerFunction) -> None:
        last: datetime | None = None
        if fn.run_on_startup:
            now = self._clock()
            self._fire(fn, now, None, fn.schedule.next_after(now))
            last = now
        due = fn.schedule.next_after(self._clock())
        while not self._stop.wait(max(0.0, (due - self._clock()).total_seconds())):
            now = self._clock()
            if now < due:  # woke a little early
                continue
            following = fn.schedule.next_after(max(now, due))
            self._fire(fn, due, last, following)
            last, due = due, following

    def _fire(self, fn: TimerFunction, scheduled: datetime, last: datetime | None, following: datetime) -> None:
        try:
            invoke(fn.call, fn.arg, timer_request(scheduled, last, following, self._clock()))
            log.info("%s ran (scheduled %s)", fn.name, scheduled.isoformat())
        except Exception as exc:
            log.warning("%s failed: %s", fn.name, type(exc).__name__)
            log.debug("%s failure", fn.name, exc_info=True)

    # --- HTTP --------------------------------------------------------------------------------------------------
    def match(self, method: str, path: str) -> tuple[HttpFunction | None, dict[str, str], int]:
        """(function, route params, status): 404 when no route matches, 405 when none allows the method."""
        prefix = f"/{self.prefix}" if self.prefix else ""
        if prefix and path != prefix and not path.startswith(prefix + "/"):
            return None, {}, 404
        relative = path[len(prefix):] or "/"
        status = 404
        for fn in self.functions.http:
            found = fn.pattern.match(relative)
            if not found:
                continue
            if fn.methods is not None and method not in fn.methods:
                status = 405
                continue
            # Route values are percent-decoded, as the Functions host does (`s0001~rule%3AC-1` → `s0001~rule:C-1`).
            return fn, {k: unquote(v) for k, v in found.groupdict().items() if v is not None}, 200
        return None, {}, status

    def authorised(self, fn: HttpFunction, params: dict[str, str], headers: dict[str, str]) -> bool:
        if fn.auth_level == "anonymous" or not self.functions_key:
            return True
        given = params.get("code") or headers.get("x-functions-key") or ""
        return hmac.compare_digest(given.encode(), self.functions_key.encode())


def _handler_for(host: LocalHost) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "crmflow-localhost"

        def _handle(self) -> None:
            started = time.monotonic()
            parts = urlsplit(self.path)
            body = self._read_body()  # always, so a keep-alive connection stays in step
            if body is None:
                return
            fn, route_params, status = host.match(self.command, parts.path)
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if not loopback_host(self.headers.get("Host")):
                self._reply(421, {"content-type": "application/json"},
                            json.dumps({"error": "MisdirectedRequest",
                                        "message": "the local host answers only Host 127.0.0.1, localhost or "
                                                   "[::1]"}).encode())
            elif fn is None:
                self._reply(status, {"content-type": "application/json"},
                            json.dumps({"error": "NotFound" if status == 404 else "MethodNotAllowed"}).encode())
            elif not host.authorised(fn, params, headers):
                self._reply(401, {}, b"")
            else:
                self._run(fn, func.HttpRequest(
                    self.command, f"{host.url}{self.path}", headers=headers, params=params,
                    route_params=route_params, body=body))
            # The path only: query strings carry keys and tokens.
            log.info("%s %s", self.command, parts.path)
            log.debug("%s %s took %.0f ms", self.command, parts.path, (time.monotonic() - started) * 1000)

        def _read_body(self) -> bytes | None:
            declared = self.headers.get("Content-Length") or "0"
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower() or not declared.isdigit():
                self.close_connection = True  # the unread body would be taken for the next request
                self._reply(411, {}, b"")
                return None
            length = int(declared)
            if length > MAX_REQUEST_BYTES:
                self.close_connection = True
                self._reply(413, {}, b"")
                return None
            return self.rfile.read(length) if length else b""

        def _run(self, fn: HttpFunction, request: func.HttpRequest) -> None:
            try:
                response = invoke(fn.call, fn.arg, request)
            except Exception as exc:
                log.warning("%s failed: %s", fn.name, type(exc).__name__)
                log.debug("%s failure", fn.name, exc_info=True)
                self._reply(500, {}, b"")
                return
            if isinstance(response, func.HttpResponse):
                headers = {k.lower(): v for k, v in response.headers.items()}
                headers.setdefault("content-type", f"{response.mimetype}; charset={response.charset}")
                self._reply(response.status_code, headers, response.get_body() or b"")
            elif response is None:
                self._reply(204, {}, b"")
            else:
                text = response if isinstance(response, bytes) else str(response).encode("utf-8")
                self._reply(200, {"content-type": "text/plain; charset=utf-8"}, text)

        def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # logged in _handle without the query string

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        def __getattr__(self, name: str) -> Any:
            # Any other method (TRACE, PROPFIND, ...) is routed too: 405/404 like Azure, not the stdlib's 501.
            if name.startswith("do_"):
                return self._handle
            raise AttributeError(name)

    return Handler
