"""Entra ID token endpoint stand-in (HTTPS, as MSAL insists) and the App Service managed-identity endpoint."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from urllib.parse import parse_qs

from tests.standins.base import Request, Response, StandIn, TokenIssuer


def self_signed_tls(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1 and the CA file a client must trust."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "standin.crt", directory / "standin.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


class TokenStandIn(StandIn):
    """`/{tenant}/v2.0/.well-known/openid-configuration`, `/{tenant}/oauth2/v2.0/token` (client credentials with a
    secret or a client assertion) and `/msi/token` (IDENTITY_ENDPOINT protocol, header X-IDENTITY-HEADER)."""

    def __init__(self, issuer: TokenIssuer, tls: ssl.SSLContext, clients: dict[str, str] | None = None,
                 identity_header: str = "standin-identity-header"):
        super().__init__(issuer=issuer, tls=tls)
        self.clients = dict(clients or {})  # client_id -> secret
        self.identity_header = identity_header
        self.scopes: list[str] = []
        self.route("GET", r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration", "discovery", self._discovery,
                   auth=False)
        self.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", "token", self._token, auth=False)
        self.route("GET", r"/msi/token", "msi", self._msi, auth=False)

    def _discovery(self, request: Request) -> Response:
        base = f"{self.url}/{request.match['tenant']}"
        return Response(200, {"token_endpoint": f"{base}/oauth2/v2.0/token",
                              "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                              "issuer": f"{base}/v2.0",
                              "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode"})

    def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        client = form.get("client_id", "")
        known = client in self.clients
        secret_ok = known and (form.get("client_secret") == self.clients[client] or "client_assertion" in form)
        if form.get("grant_type") != "client_credentials" or not secret_ok:
            return Response(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid secret"})
        self.scopes.append(form.get("scope", ""))
        token, _ = self.issuer.issue(form.get("scope", ""))
        return Response(200, {"token_type": "Bearer", "expires_in": int(self.issuer.lifetime),
                              "ext_expires_in": int(self.issuer.lifetime), "access_token": token})

    def _msi(self, request: Request) -> Response:
        if request.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return Response(401, {"error": "invalid_request"})
        resource = request.query.get("resource", [""])[0]
        token, expires = self.issuer.issue(resource)
        return Response(200, {"access_token": token, "expires_on": str(int(expires)), "resource": resource,
                              "token_type": "Bearer", "client_id": "standin-mi"})
