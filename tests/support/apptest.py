"""The dashboard's page (dashboard/app.py) under Streamlit's AppTest: one run, and reading what it shows."""

from __future__ import annotations

from collections.abc import Iterable

from streamlit.testing.v1 import AppTest

from tests.support.paths import REPO_ROOT

APP = str(REPO_ROOT / "dashboard" / "app.py")
RUN_TIMEOUT = 120  # seconds: a run on a busy machine, 10,000 candles included


def page(query: dict[str, str] | None = None) -> AppTest:
    """The page after one run with ``query`` as its URL's query string."""
    app = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT)
    app.query_params.update(query or {})
    app.run()
    assert not app.exception, [item.value for item in app.exception]
    return app


def texts(elements: Iterable) -> list[str]:
    return [element.value for element in elements]


def badges(app: AppTest, title: str) -> list[str]:
    """The badges beside the subheader ``title`` (its row: a horizontal container), in order."""
    for block in _blocks(app.main):
        children = list(block.children.values())
        if any(child.type == "subheader" and child.value == title for child in children):
            return [child.value for child in children if child.type == "markdown" and "-badge[" in child.value]
    raise AssertionError(f"no subheader {title!r} on the page")


def _blocks(node):
    yield node
    for child in getattr(node, "children", {}).values():
        if hasattr(child, "children"):
            yield from _blocks(child)
