"""Schemathesis fuzzes every route of docs/openapi.json against the local host running function_app's functions
(real HTTP, Azurite, the local broker): no answer is a 5xx, and a request the app refuses (4xx) queues nothing.

Bounded for CI: FUZZ_EXAMPLES cases per operation (positive and negative), about a minute in all.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

import function_app
from devhost import LocalHost
from shared.broker.local import LocalBroker
from shared.container import Container
from shared.web.openapi import document
from tests.conftest import make_settings
from tests.crm_helpers import SECRETS_ENV

FUZZ_EXAMPLES = int(os.environ.get("CRMFLOW_FUZZ_EXAMPLES", "40"))

schema = schemathesis.openapi.from_dict(document())


@dataclass(frozen=True)
class Published:
    queue: str
    message_id: str
    thread: str


class RecordingBroker:
    """The real local broker, noting every publish and the thread it came from (HTTP handler or trigger)."""

    def __init__(self, broker: LocalBroker):
        self._broker = broker
        self._lock = threading.Lock()
        self.published: list[Published] = []

    def publish(self, queue, messages):
        messages = list(messages)
        self._broker.publish(queue, messages)
        with self._lock:
            self.published += [Published(queue, m.message_id, threading.current_thread().name) for m in messages]

    def from_requests_since(self, mark: int) -> list[Published]:
        """Publishes made while serving HTTP requests (not by queue triggers or timers) after `mark`."""
        with self._lock:
            return [p for p in self.published[mark:] if not p.thread.startswith(("localhost-queue", "localhost-timer"))]

    def __getattr__(self, name):
        return getattr(self._broker, name)


@pytest.fixture(scope="module")
def fuzzed(azurite, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    app_settings = make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string,
                                 UNSUBSCRIBE_SIGNING_KEY="fuzz-signing-key", CUSTOMER_SHARDS="4", **SECRETS_ENV)
    container = Container(app_settings)
    container.tables.ensure_tables()
    recording = RecordingBroker(LocalBroker(app_settings.local_dir / "broker.sqlite3"))
    container.broker = recording
    # No FUNCTIONS_KEY: function-level routes are reached by every generated request, not stopped at the key.
    with LocalHost(function_app.app, container, port=0, functions_key="", receive_wait_seconds=0.2) as host:
        yield host, recording
    recording.close()


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_route_answers_5xx_and_a_refused_request_queues_nothing(case, fuzzed):
    host, broker = fuzzed
    mark = len(broker.published)
    response = case.call(base_url=host.url, timeout=30)
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:
        queued = broker.from_requests_since(mark)
        assert not queued, f"{case.method} {case.path} answered {response.status_code} but queued {queued}"
