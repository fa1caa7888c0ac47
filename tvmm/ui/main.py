"""Opening the UI on a monitor full of guests."""

from __future__ import annotations


def run_ui(monitor) -> int:
    from .app import TvmmApp
    TvmmApp(monitor).run()
    return 0
