"""Over real HTTP on the local host with a Functions key configured: a forged Salesforce notification (right org id,
no key) is refused and queues nothing; Salesforce's own call, whose endpoint URL carries ?code=, is acknowledged."""

from __future__ import annotations

import requests

import function_app
from devhost import LocalHost
from shared.container import Container
from shared.domain.names import CRM_EVENTS
from tests.conftest import make_settings
from tests.crm_helpers import SECRETS_ENV, sample

KEY = "salesforce-endpoint-key"
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


def test_salesforce_needs_the_functions_key(azurite, tmp_path):
    container = Container(make_settings(tmp_path, TABLES_CONNECTION_STRING=azurite.connection_string,
                                        FUNCTIONS_KEY=KEY, **SECRETS_ENV))
    container.tables.ensure_tables()
    body = sample("salesforce_outbound.xml")
    try:
        with LocalHost(function_app.app, container, port=0, receive_wait_seconds=0.2) as host:
            url = f"{host.url}/api/crm/salesforce"
            forged = requests.post(url, data=body, headers=HEADERS, timeout=10)
            assert forged.status_code == 401
            assert requests.post(f"{url}?code=guess", data=body, headers=HEADERS, timeout=10).status_code == 401
            assert container.broker.count(CRM_EVENTS) == 0 and not container.broker.peek_dead_letters(CRM_EVENTS)
            real = requests.post(f"{url}?code={KEY}", data=body, headers=HEADERS, timeout=10)
            assert real.status_code == 200 and b"<Ack>true</Ack>" in real.content
            assert real.headers["X-Crmflow-Accepted"] == "2"
    finally:
        container.broker.close()
