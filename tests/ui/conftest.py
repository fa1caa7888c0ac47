"""Shared set-up for UI tests: an app whose machine is driven by the test
(``settle`` applies queued commands and runs a slice), so what the panes
show is deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest

from tvmm.guestspec import GuestSpec
from tvmm.monitor.vmm import Monitor

ROOT = Path(__file__).resolve().parents[2]
B = ROOT / "samples" / "build"


def specs():
    return [GuestSpec(name="flaky", kernel=str(B / "flaky.elf"), cmdline="seed=1", mem=16 << 20),
            GuestSpec(name="multitask", kernel=str(B / "multitask.elf"), cmdline="forever", mem=16 << 20),
            GuestSpec(name="hello", kernel=str(B / "hello.elf"), mem=8 << 20)]


@pytest.fixture
def make_app():
    from tvmm.ui.app import TvmmApp

    def make(guest_specs=None):
        guest_specs = guest_specs or specs()
        monitor = Monitor(Monitor.host_size_for(guest_specs))
        for s in guest_specs:
            monitor.add_guest(s)
        app = TvmmApp(monitor, start_engine=False)
        # no animations: a tab's underline slides for a while after a switch,
        # and a screenshot taken meanwhile depends on the host's speed
        app.animation_level = "none"
        app.engine.slice = 20_000
        return app
    return make


async def settle(pilot, app, slices: int = 1):
    for _ in range(slices):
        app.engine.step_once()
        app.engine.publish()
        app.refresh_views(force=True)
        await pilot.pause()


async def until(pilot, app, cond, limit: int = 400):
    for _ in range(limit):
        if cond():
            return
        await settle(pilot, app)
    raise AssertionError("condition never held")
