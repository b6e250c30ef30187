"""Fixtures of the function-adapter tests."""

from __future__ import annotations

import pytest

from shared.container import set_container


@pytest.fixture
def installed(container):
    """The test's container installed as the process-wide one the functions reach through get_container()."""
    set_container(container)
    yield container
    set_container(None)
