"""An NMI reaches the monitor's event log as its own kind and the UI's
events pane shows it (Pilot)."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from tests.monitor.kit import Layout, X, tiny_kernel
from tvmm.guestspec import GuestSpec

from .conftest import settle, until

pytestmark = pytest.mark.asyncio

SVR, ICR_LO = 0xFEE000F0, 0xFEE00300
NMI_SELF = (1 << 18) | (4 << 8) | (1 << 14)


def _store_imm(addr: int, v: int) -> bytes:
    return b"\xc7\x05" + addr.to_bytes(4, "little") + v.to_bytes(4, "little")


async def test_an_nmi_to_self_shows_in_the_events_pane(make_app, tmp_path):
    path = tmp_path / "nmi.bin"
    path.write_bytes(tiny_kernel(_store_imm(SVR, 0x1FF) + _store_imm(ICR_LO, NMI_SELF) + X.HLT))
    app = make_app([GuestSpec(name="nmi", kernel=str(path), mem=8 << 20)])
    Layout(app.monitor.guest("nmi")).flat_gdt_idt()      # vector 2's handler records it and halts
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, app, lambda: app.engine.views["nmi"].state == "halted")
        await pilot.press("e")
        await settle(pilot, app)
        assert "nmi 1" in str(app.query_one("#event-counts").render())
        table = app.query_one("#event-table", DataTable)
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        nmi = [r for r in rows if str(r[2]) == "nmi"]
        assert len(nmi) == 1 and str(nmi[0][3]).startswith("delivered through vector 2")
