"""Fixtures the dashboard's browser tests share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import StreamlitServer, chromium


@pytest.fixture(scope="module")
def browser(server: StreamlitServer) -> Iterator[Any]:
    """Headless Chromium for a module's ``server`` fixture: started after the server and closed before
    it (its renderers must not outlive the server)."""
    with chromium() as started:
        yield started
