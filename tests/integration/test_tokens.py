"""MSAL token providers against the local token endpoint (HTTPS) and managed-identity endpoint."""

from __future__ import annotations

import pytest
import requests

from shared.delivery.http import ApiClient
from shared.delivery.tokens import GRAPH_RESOURCE, GRAPH_SCOPE, ClientCredentialTokens, ManagedIdentityTokens
from shared.domain.errors import Unauthorized
from tests.standins import GraphStandIn, TokenIssuer, TokenStandIn, self_signed_tls


@pytest.fixture
def endpoints(tmp_path):
    issuer = TokenIssuer()
    tls, ca = self_signed_tls(tmp_path)
    session = requests.Session()
    session.verify = str(ca)
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides `verify`
    with TokenStandIn(issuer, tls, {"app": "secret"}) as token, GraphStandIn(issuer, users={"a@x.example": "oid-a"}) \
            as graph:
        yield token, graph, issuer, session


def test_client_secret_token_is_cached_and_refreshed_once_after_401(endpoints):
    token, graph, issuer, session = endpoints
    tokens = ClientCredentialTokens(tenant_id="t1", client_id="app", client_secret="secret", scope=GRAPH_SCOPE,
                                    authority_host=token.url, http_client=session)
    api = ApiClient("graph", tokens, session)
    assert api.request("GET", f"{graph.url}/users/a@x.example").json()["id"] == "oid-a"
    api.request("GET", f"{graph.url}/users/a@x.example")
    assert token.calls("token") == 1  # the second call used MSAL's cache
    assert GRAPH_SCOPE in token.scopes[0]
    issuer.expire_all()  # the cached token is now rejected by Graph
    assert api.request("GET", f"{graph.url}/users/a@x.example").status_code == 200
    assert token.calls("token") == 2 and graph.calls("user") == 4  # one 401, one refresh, one retry


def test_wrong_secret_is_a_permanent_unauthorized(endpoints):
    token, _, _, session = endpoints
    tokens = ClientCredentialTokens(tenant_id="t1", client_id="app", client_secret="wrong", scope=GRAPH_SCOPE,
                                    authority_host=token.url, http_client=session)
    with pytest.raises(Unauthorized):
        tokens.token()


def test_managed_identity_uses_the_functions_identity_endpoint(endpoints, monkeypatch):
    token, _graph, issuer, session = endpoints
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{token.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", token.identity_header)
    tokens = ManagedIdentityTokens(resource=GRAPH_RESOURCE, http_client=session)
    first = tokens.token()
    assert issuer.valid(first) and tokens.token() == first  # cached
    assert tokens.token(force_refresh=True) != first
    assert token.calls("msi") == 2
