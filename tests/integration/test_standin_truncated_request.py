"""A worker SIGKILLed between sending a request's headers and its body leaves the stand-in a request cut short. A
real service never carries that out; the Bot stand-in once recorded it as a posted activity with no content, which
the chaos run counted as a card nobody planned."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import requests

from tests.standins import BotStandIn, TokenIssuer

ACTIVITY = {"type": "message", "summary": "a card"}


def raw_post(url: str, path: str, token: str, body: bytes, *, declared: int) -> None:
    """POST `body` while declaring `declared` bytes, then close the connection (as a killed client does)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as connection:
        connection.sendall((f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
                            f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n").encode() + body)
        connection.shutdown(socket.SHUT_WR)
        connection.recv(4096)  # the stand-in closes its side without an answer


def test_a_request_cut_off_before_its_body_is_not_carried_out():
    issuer = TokenIssuer()
    token, _ = issuer.issue("https://api.botframework.com")
    with BotStandIn(issuer) as bot:
        bot.conversations["a:1"] = "member-1"
        path = "/v3/conversations/a:1/activities"
        body = json.dumps(ACTIVITY).encode()
        raw_post(bot.url, path, token, b"", declared=len(body))  # headers only
        raw_post(bot.url, path, token, body[:10], declared=len(body))  # part of the body
        assert bot.activities == []
        # The same request complete is carried out (the check above can fail).
        answer = requests.post(f"{bot.url}{path}", json=ACTIVITY, headers={"Authorization": f"Bearer {token}"},
                               timeout=5)
        assert answer.status_code == 201
        assert bot.activities == [("a:1", ACTIVITY)]
