"""Access tokens for Graph and the Bot Connector, through MSAL.

`TokenProvider` is the port the HTTP clients use: `token()` returns a bearer token for one resource, cached by MSAL
until shortly before expiry; `token(force_refresh=True)` drops the cached one first (after a 401 with an expired or
revoked token). Build the MSAL application once per process (`Container` does): it owns the token cache.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msal
import requests

from shared.domain.errors import ConfigError, TransientError, Unauthorized

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRAPH_RESOURCE = "https://graph.microsoft.com"
BOT_SCOPE = "https://api.botframework.com/.default"

# Entra errors that retrying cannot fix (bad secret, unknown app or tenant, missing consent).
_PERMANENT_ERRORS = {"invalid_client", "unauthorized_client", "invalid_request", "invalid_scope", "invalid_resource"}


class TokenProvider(ABC):
    @abstractmethod
    def token(self, *, force_refresh: bool = False) -> str:
        """A bearer token; Unauthorized when the credentials are rejected, TransientError when Entra is down."""


def _drop_access_tokens(cache: msal.TokenCache) -> None:
    for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
        cache.remove_at(item)


def _result_token(result: dict[str, Any] | None, what: str) -> str:
    if result and "access_token" in result:
        return result["access_token"]
    error = (result or {}).get("error", "no_response")
    # The description may echo the client id; keep the error code only.
    if error in _PERMANENT_ERRORS:
        raise Unauthorized(f"{what}: token request rejected ({error})")
    raise TransientError(f"{what}: token request failed ({error})")


class ClientCredentialTokens(TokenProvider):
    """App-only tokens with a client secret or a certificate (`ConfidentialClientApplication`)."""

    def __init__(self, *, tenant_id: str, client_id: str, scope: str, authority_host: str,
                 client_secret: str | None = None, certificate_pem: Path | None = None,
                 certificate_thumbprint: str | None = None, http_client: requests.Session | None = None):
        if client_secret:
            credential: Any = client_secret
        elif certificate_pem and certificate_thumbprint:
            credential = {"private_key": certificate_pem.read_text(encoding="utf-8"),
                          "thumbprint": certificate_thumbprint}
        else:
            raise ConfigError(f"client {client_id}: a client secret or a certificate is required")
        known = urlparse(authority_host).hostname in {"login.microsoftonline.com", "login.microsoftonline.us",
                                                      "login.chinacloudapi.cn", "login.microsoft.com"}
        self.scope = scope
        self._lock = threading.Lock()
        self.app = msal.ConfidentialClientApplication(
            client_id, client_credential=credential, authority=f"{authority_host}/{tenant_id}",
            http_client=http_client or requests.Session(),
            # Instance discovery asks login.microsoftonline.com about the authority host; skip it for hosts that
            # are not Microsoft's (a sovereign proxy, the local stand-in) instead of calling out.
            instance_discovery=None if known else False)

    def token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            if force_refresh:
                self.app.remove_tokens_for_client()
            try:
                result = self.app.acquire_token_for_client(scopes=[self.scope])
            except (requests.RequestException, ValueError) as exc:
                raise TransientError(f"token endpoint unreachable: {type(exc).__name__}") from None
        return _result_token(result, "client credentials")


class ManagedIdentityTokens(TokenProvider):
    """Tokens for the Function App's managed identity (`ManagedIdentityClient`); user-assigned when a client id
    is given. MSAL finds the endpoint itself (IDENTITY_ENDPOINT/IDENTITY_HEADER on Functions)."""

    def __init__(self, *, resource: str, client_id: str | None = None, http_client: requests.Session | None = None):
        identity = (msal.UserAssignedManagedIdentity(client_id=client_id) if client_id
                    else msal.SystemAssignedManagedIdentity())
        self.resource = resource
        self.cache = msal.TokenCache()
        self._lock = threading.Lock()
        self.client = msal.ManagedIdentityClient(identity, http_client=http_client or requests.Session(),
                                                 token_cache=self.cache)

    def token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            if force_refresh:
                _drop_access_tokens(self.cache)
            try:
                result = self.client.acquire_token_for_client(resource=self.resource)
            except (requests.RequestException, ValueError) as exc:
                raise TransientError(f"managed identity endpoint unreachable: {type(exc).__name__}") from None
            except msal.ManagedIdentityError as exc:
                raise ConfigError(f"managed identity is not available here: {exc}") from None
        return _result_token(result, "managed identity")
