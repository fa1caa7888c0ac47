"""The layout pinned at 80x24 and at a large size (pytest-textual-snapshot).

The machine is stepped a fixed number of slices (guest time is the
instruction count, so the screen is the same every run) and speeds are
zeroed (they are wall-clock figures).  Update after a deliberate change with
``pytest tests/ui/test_snapshots.py --snapshot-update``."""

from __future__ import annotations

import pytest

from .conftest import settle


def _prepared(make_app, slices: int, tab: str | None = None):
    app = make_app()

    async def run_before(pilot):
        await settle(pilot, app, slices)
        await pilot.press("space")                       # pause the selected guest: a stable screen
        await settle(pilot, app)
        if tab:
            await pilot.press(tab)
        app.engine.speed = {name: 0.0 for name in app.engine.speed}
        app.engine.publish()
        app.refresh_views(force=True)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
    return app, run_before


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_layout(snap_compare, make_app, size):
    app, run_before = _prepared(make_app, 4)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_page_tables_at_80x24(snap_compare, make_app):
    app, run_before = _prepared(make_app, 4, tab="p")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
