"""The UI driven by Textual's Pilot: every interaction, and what the panes
then show."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, TabbedContent

from tvmm.ui.panes.disasm import DisasmPane
from tvmm.ui.panes.registers import RegistersPane

from .conftest import settle, until

pytestmark = pytest.mark.asyncio


def view(app, name=None):
    return app.engine.views[name or app.selected]


def sym(app, name):
    return app.symbols[app.selected].lookup(name)


async def test_guests_pane_shows_every_guest_state_and_progress(make_app):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, app, lambda: view(app, "hello").state == "halted")
        table = app.query_one("#guests", DataTable)
        rows = {table.get_row_at(i)[0]: table.get_row_at(i) for i in range(table.row_count)}
        assert set(rows) == {"flaky", "multitask", "hello"}
        assert str(rows["hello"][1]).startswith("halted") and str(rows["multitask"][1]) == "running"
        assert rows["hello"][2] == str(view(app, "hello").icount)


async def test_pause_step_and_changed_registers(make_app):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, 3)
        await pilot.press("space")                       # pause the selected guest (flaky)
        await settle(pilot, app)
        assert view(app).state == "paused"
        before = view(app)
        await pilot.press("s")
        await settle(pilot, app)
        after = view(app)
        assert after.icount == before.icount + 1 and after.regs.eip != before.regs.eip
        assert "eip" in app.query_one(RegistersPane).changed          # highlighted
        await pilot.press("space")
        await settle(pilot, app)
        assert view(app).state == "running"


async def test_run_to_symbol_breakpoint_toggle_and_step_over(make_app):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("g", *"list_push", "enter")   # run to a symbol
        await until(pilot, app, lambda: view(app).state == "paused")
        assert view(app).regs.eip == sym(app, "list_push")
        assert not view(app).breakpoints                 # the run-to breakpoint was temporary
        disasm = app.query_one(DisasmPane)
        assert disasm.cursor_addr == sym(app, "list_push")
        await pilot.press("b")                           # a breakpoint at the cursor line
        await settle(pilot, app)
        assert view(app).breakpoints == {sym(app, "list_push")}
        assert "●▶" in str(disasm.render())
        first = view(app).icount
        await pilot.press("space")                       # run: stops there again
        await until(pilot, app, lambda: view(app).state == "paused" and view(app).icount > first)
        assert view(app).regs.eip == sym(app, "list_push")
        # step over: run to the first call in kmain, then `n` runs the callee
        # and stops on the instruction after the call
        await pilot.press("b")                           # breakpoint off again
        await pilot.press("r")                           # from a fresh boot
        await pilot.press("g", *"kmain", "enter")
        await until(pilot, app, lambda: view(app).state == "paused" and view(app).regs.eip == sym(app, "kmain"))
        addrs = [a for a, _ in disasm.lines]
        call_at = next(a for a, text in disasm.lines if a >= sym(app, "kmain") and text.startswith("call"))
        nxt = addrs[addrs.index(call_at) + 1]
        await pilot.press("g", *hex(call_at), "enter")
        await until(pilot, app, lambda: view(app).state == "paused" and view(app).regs.eip == call_at)
        before = view(app).icount
        await pilot.press("n")
        await until(pilot, app, lambda: view(app).state == "paused" and view(app).regs.eip == nxt)
        assert view(app).icount > before + 2             # the whole callee ran


async def test_reset_and_switching_guests(make_app):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, 3)
        assert view(app, "flaky").icount > 0
        await pilot.press("r")
        await settle(pilot, app)
        assert view(app, "flaky").icount <= app.engine.slice and view(app, "flaky").state == "running"
        await pilot.press("right_square_bracket")
        await settle(pilot, app)
        assert app.selected == "multitask"
        shown = str(app.query_one(RegistersPane).render())
        assert f"eip {view(app, 'multitask').regs.eip:08x}" in shown


async def test_page_tables_guest_beside_shadow_and_jump(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 3)                      # flaky has paging on by now
        await pilot.press("space")
        await pilot.press("j", *"0x100000", "enter")
        await settle(pilot, app)
        assert app.query_one(TabbedContent).active == "pages"
        table = app.query_one("#pages-pane", DataTable)
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        row = next(r for r in rows if r[0] == "00100000")
        assert row[1].endswith("PW.A....") or "P" in row[1]           # the guest's directory entry
        assert row[3] == "00100000" and row[5] != "-"                  # gpa, and the host frame
        hpa = int(row[5], 16)
        assert hpa >> 12 == app.monitor.guest("flaky").gmem.frames[0x100]
        assert any(r[6] == "not filled" for r in rows) or any(r[6] == "not mapped by the guest" for r in rows)


async def test_events_counters_filter_and_details(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 3)
        await pilot.press("space", "e")
        await settle(pilot, app)
        counts = str(app.query_one("#event-counts").render())
        assert "io" in counts and "pf-hidden" in counts
        await pilot.press("f")                           # first kind alphabetically
        await settle(pilot, app)
        pane = app.query_one("#events-pane")
        kinds = {e.kind for e in pane._events}
        assert len(kinds) == 1
        table = app.query_one("#event-table", DataTable)
        table.focus()
        await pilot.press("down")
        await pilot.pause()
        assert "event #" in str(app.query_one("#event-detail").render())


async def test_console_typing_reaches_the_guests_uart_and_cga_screen(make_app):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("right_square_bracket", "right_square_bracket")      # hello
        await until(pilot, app, lambda: view(app).state == "halted")
        assert "bye" in str(app.query_one("#serial").render())
        await pilot.press("v")                           # the CGA screen instead of the serial log
        await pilot.pause()
        assert "Hello from the hello sample kernel!" in str(app.query_one("#serial").render())
        await pilot.press("i", *"ls", "enter")
        await settle(pilot, app)
        pc = app.monitor.guest("hello").pc
        pc.clock.advance(pc.clock.now + 10_000_000)      # (the halted guest's time stands still)
        uart = pc.com1
        assert uart.port_read(0x3FD, 1) & 1              # data ready: the guest can read it
        assert bytes(uart.port_read(0x3F8, 1) for _ in range(3)) == b"ls\n"


async def test_memory_at_a_symbol(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 2)
        await pilot.press("space", "x", *"ticks", "enter")
        await settle(pilot, app)
        assert app.query_one(TabbedContent).active == "memory"
        text = str(app.query_one("#memory-pane").render())
        assert text.startswith(f"{sym(app, 'ticks'):08x}")


async def test_every_action_is_in_the_command_palette(make_app):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("space")
        await settle(pilot, app)
        before = view(app).icount
        await pilot.press("ctrl+p")
        await pilot.press(*"Step one instruction")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot, app)
        assert view(app).icount == before + 1
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for needed in ("Run or pause the selected guest", "Toggle a breakpoint at the disassembly cursor",
                       "Show page tables: guest beside shadow", "Reset the selected guest"):
            assert needed in titles


async def test_breakpoint_list_and_events_of_every_guest(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("g", *"list_push", "enter")
        await until(pilot, app, lambda: view(app).state == "paused")
        await pilot.press("b", "l")                      # a breakpoint, then the list
        await settle(pilot, app)
        table = app.query_one("#breaks-pane", DataTable)
        assert table.get_row_at(0) == [f"{sym(app, 'list_push'):08x}", "list_push"]
        table.focus()
        await pilot.press("delete")                      # removed from the list
        await settle(pilot, app)
        assert not view(app).breakpoints
        await pilot.press("E")                           # events of every guest
        await settle(pilot, app)
        kinds = {str(table_row[2]).split(":")[0] for table_row in
                 (app.query_one("#event-table", DataTable).get_row_at(i)
                  for i in range(app.query_one("#event-table", DataTable).row_count))}
        assert {"flaky", "multitask"} <= kinds


async def test_guest_output_with_brackets_is_shown_verbatim(make_app, tmp_path):
    from tests.monitor.kit import tiny_kernel
    from tvmm.guestspec import GuestSpec
    text = b"[bold]not markup[/bold] [x]\n"
    code = b"\xba\xf8\x03\x00\x00" + b"".join(b"\xb0" + bytes([c]) + b"\xee" for c in text) + b"\xfa\xf4"
    path = tmp_path / "k.bin"
    path.write_bytes(tiny_kernel(code))
    app = make_app([GuestSpec(name="k", kernel=str(path), mem=4 << 20)])
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, app, lambda: view(app).state == "halted")
        assert "[bold]not markup[/bold] [x]" in str(app.query_one("#serial").render())


async def test_step_back_returns_to_the_earlier_state(make_app):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, 3)
        await pilot.press("space")
        await settle(pilot, app)
        before = view(app)
        for _ in range(4):
            await pilot.press("s")
            await settle(pilot, app)
        assert view(app).icount == before.icount + 4
        for _ in range(4):
            await pilot.press("S")                       # step back
            await settle(pilot, app)
        after = view(app)
        assert (after.icount, after.regs, after.console) == (before.icount, before.regs, before.console)


async def test_a_recorded_session_replays_in_the_ui_with_its_inputs():
    import os
    from tvmm.monitor.record import load, specs_of
    from tvmm.monitor.vmm import Monitor
    from tvmm.ui.app import TvmmApp
    from .conftest import ROOT
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        head, recs = load("tests/sessions/console.tvmm.jsonl")
        specs = specs_of(head)
        monitor = Monitor(Monitor.host_size_for(specs))
        for s in specs:
            monitor.add_guest(s)
    finally:
        os.chdir(cwd)
    app = TvmmApp(monitor, start_engine=False, replay=recs)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, app, lambda: view(app).state == "halted")
        assert "you typed: HELLO TVMM" in str(app.query_one("#serial").render())
        end = next(r for r in recs if r["t"] == "end")
        assert view(app).now == end["time"]              # the same instruction count as recorded


async def test_run_to_the_first_code_on_its_page_stops_there(make_app):
    # hello held at _start: kmain is the first instruction run on its page
    # (a resume used to run off a breakpoint that was not at EIP and skip it)
    from tvmm.guestspec import GuestSpec

    from .conftest import B
    app = make_app([GuestSpec(name="hello", kernel=str(B / "hello.elf"), mem=8 << 20)])
    app.monitor.guests[0].pause("waiting for gdb")      # as ``tvmm ui --wait-gdb`` holds it
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        assert view(app).state == "paused" and view(app).icount == 0
        await pilot.press("g", *"kmain", "enter")
        await until(pilot, app, lambda: view(app).state != "running" and view(app).icount > 0)
        assert view(app).state == "paused" and view(app).regs.eip == sym(app, "kmain")
        assert view(app).icount == 4
