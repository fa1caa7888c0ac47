"""Opening the UI on a monitor full of guests (with GDB stubs if asked)."""

from __future__ import annotations


def run_ui(monitor, gdb_server=None, wait_gdb: bool = False, replay=None) -> int:
    """``replay``: a session's records; their inputs are applied at their
    guest times while the user runs, pauses, steps and steps back."""
    from .app import TvmmApp
    if wait_gdb:
        for g in monitor.guests:
            g.pause("waiting for gdb")
    TvmmApp(monitor, gdb_server=gdb_server, replay=replay).run()
    return 0
