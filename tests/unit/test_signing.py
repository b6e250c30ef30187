from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from shared.domain.errors import ConfigError, InvalidInput, Unauthorized
from shared.domain.signing import APPROVAL, UNSUBSCRIBE, sign, unsubscribe_url, verify
from shared.settings import Settings

SETTINGS = Settings.from_env({"TABLES_CONNECTION_STRING": "x", "UNSUBSCRIBE_SIGNING_KEY": "k" * 32})
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def test_round_trip_and_purpose_binding():
    token = sign(SETTINGS, UNSUBSCRIBE, "C-001", NOW)
    assert verify(SETTINGS, UNSUBSCRIBE, token, NOW) == "C-001"
    with pytest.raises(Unauthorized):
        verify(SETTINGS, APPROVAL, token, NOW)


def test_tampered_expired_and_malformed_tokens_fail():
    token = sign(SETTINGS, UNSUBSCRIBE, "C-001", NOW, lifetime=timedelta(days=1))
    other = sign(SETTINGS, UNSUBSCRIBE, "C-002", NOW)
    with pytest.raises(Unauthorized):
        verify(SETTINGS, UNSUBSCRIBE, other.split(".")[0] + "." + token.split(".")[1], NOW)
    with pytest.raises(Unauthorized, match="expired"):
        verify(SETTINGS, UNSUBSCRIBE, token, NOW + timedelta(days=2))
    with pytest.raises(InvalidInput):
        verify(SETTINGS, UNSUBSCRIBE, "garbage", NOW)


def test_url_carries_no_personal_data_and_needs_a_key():
    url = unsubscribe_url(SETTINGS, "C-001", NOW)
    assert url.startswith("http://127.0.0.1:7071/api/unsubscribe?token=")
    token = parse_qs(urlparse(url).query)["token"][0]
    assert verify(SETTINGS, UNSUBSCRIBE, token, NOW) == "C-001"
    with pytest.raises(ConfigError, match="UNSUBSCRIBE_SIGNING_KEY"):
        unsubscribe_url(Settings.from_env({"TABLES_CONNECTION_STRING": "x"}), "C-001")


def test_a_token_that_is_not_text_is_malformed_not_a_crash():
    import pytest

    from shared.domain.errors import InvalidInput
    from shared.domain.signing import verify
    from shared.settings import Settings

    settings = Settings.from_env({"TABLES_CONNECTION_STRING": "-", "UNSUBSCRIBE_SIGNING_KEY": "k"})
    for token in (["[Filtered]"], 7, None, {"a": 1}):
        with pytest.raises(InvalidInput, match="malformed"):
            verify(settings, "outcome", token)
