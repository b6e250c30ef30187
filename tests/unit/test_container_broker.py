"""Container.broker picks the adapter from BROKER."""

from __future__ import annotations

from shared.broker.local import LocalBroker
from shared.container import Container
from tests.conftest import make_settings


def test_local_broker_lives_under_local_dir(tmp_path):
    container = Container(make_settings(tmp_path, BROKER="local"))
    broker = container.broker
    assert isinstance(broker, LocalBroker)
    assert broker.path == tmp_path / "local" / "broker.sqlite3"
    assert container.broker is broker  # one per container
    broker.close()
