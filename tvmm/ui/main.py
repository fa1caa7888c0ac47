"""Opening the UI on a monitor full of guests (with GDB stubs if asked)."""

from __future__ import annotations


def run_ui(monitor, gdb_server=None, wait_gdb: bool = False) -> int:
    from .app import TvmmApp
    if wait_gdb:
        for g in monitor.guests:
            g.pause("waiting for gdb")
    TvmmApp(monitor, gdb_server=gdb_server).run()
    return 0
