"""Multiprocessor guests in the UI (Pilot): the guests pane lists each
guest's vCPUs, registers and disassembly follow the selected vCPU, stepping,
step-over and run-to act on it, and events can be filtered by vCPU.

``multitask`` with ``cpus=2`` never starts its second processor (it stays
waiting for its STARTUP IPI); ``smprace`` starts both and runs the same loop
on each (``fixed``: without its race, so it never crashes under the test)."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from tvmm.guestspec import GuestSpec
from tvmm.ui.panes.disasm import DisasmPane
from tvmm.ui.panes.events import EventsPane
from tvmm.ui.panes.guests import GuestsPane
from tvmm.ui.panes.registers import RegistersPane

from .conftest import B, settle, until

pytestmark = pytest.mark.asyncio


def multitask_and_hello():
    return [GuestSpec(name="m", kernel=str(B / "multitask.elf"), cmdline="forever", mem=16 << 20, cpus=2),
            GuestSpec(name="h", kernel=str(B / "hello.elf"), mem=8 << 20)]


def smprace():
    return [GuestSpec(name="race", kernel=str(B / "smprace.elf"), cmdline="iters=100000 fixed", mem=16 << 20,
                      cpus=2)]


def _call_in(function: int, callee: int) -> tuple[int, int]:
    """The address of the first call of ``callee`` in ``function`` (smprace), and of the instruction after."""
    import capstone
    from elftools.elf.elffile import ELFFile
    with open(B / "smprace.elf", "rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        data, base = text.data(), text["sh_addr"]
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    call = next(i for i in md.disasm(data[function - base:], function)
                if i.mnemonic == "call" and i.op_str == f"{callee:#x}")
    return call.address, call.address + call.size


def view(app, name=None):
    return app.engine.views[name or app.selected]


def rows(app):
    table = app.query_one(GuestsPane)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def title(app) -> str:
    return str(app.query_one(RegistersPane).render()).splitlines()[0]


async def pick(pilot, app, name, vcpu=None):
    """Put the guests pane's cursor on a guest's row or one of its vCPUs'."""
    pane = app.query_one(GuestsPane)
    pane.move_cursor(row=pane.row_of(name, vcpu))
    await pilot.pause()
    await settle(pilot, app)


async def both_started(pilot, app):
    """Run smprace until its second vCPU is in the loop, then pause it."""
    await until(pilot, app, lambda: view(app, "race").vcpus[1].icount > 2000)
    await pilot.press("space")
    await settle(pilot, app)
    assert view(app, "race").state == "paused"


async def test_the_guests_pane_lists_vcpus_under_a_multiprocessor_guest(make_app):
    app = make_app(multitask_and_hello())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, 3)
        shown = rows(app)
        assert [r[0] for r in shown] == ["m", "  cpu0", "  cpu1", "h"]    # 1-CPU guests: no extra rows
        # cpu0 runs, or sits in HLT until the next interrupt; cpu1 was never started
        assert shown[0][1] == "running" and shown[1][1] in ("running", "halted") and shown[2][1] == "wait SIPI"
        assert shown[1][2] == shown[0][2] and shown[2][2] == "0"           # cpu0 retired them all
        v = view(app, "m")
        assert [c.index for c in v.vcpus] == [0, 1] and v.vcpus[1].state == "wait SIPI"
        assert v.vcpus[0].icount == v.icount and v.vcpus[1].icount == 0
        assert len(view(app, "h").vcpus) == 1 and not view(app, "h").smp
        assert title(app) in ("m cpu0: running", "m cpu0: halted · guest running")


async def test_registers_and_disassembly_follow_the_selected_vcpu(make_app):
    app = make_app(multitask_and_hello())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, 3)
        await pilot.press("space")
        await settle(pilot, app)
        cpu0 = view(app)
        await pick(pilot, app, "m", 1)                   # the second processor's row
        assert (app.selected, app.selected_vcpu) == ("m", 1)
        v = view(app)
        assert v.vcpu == 1 and v.regs.eip == 0xFFF0 and not v.regs.protected     # reset state, real mode
        assert v.regs != cpu0.regs
        assert title(app) == "m cpu1: wait SIPI · guest paused"
        assert "eip 0000fff0" in str(app.query_one(RegistersPane).render())
        assert "waiting for its STARTUP IPI" in str(app.query_one(DisasmPane).render())
        await pick(pilot, app, "h")                      # another guest: one processor, no vCPU in the title
        assert (app.selected, app.selected_vcpu) == ("h", 0)
        assert title(app).startswith("h: ")
        await pick(pilot, app, "m")                      # the guest's own row: its bootstrap processor
        assert (app.selected, app.selected_vcpu, view(app).vcpu) == ("m", 0, 0)
        assert view(app).regs == cpu0.regs
        assert title(app).startswith("m cpu0: ")
        assert not app.query_one(RegistersPane).changed  # nothing changed on cpu0 meanwhile
        await pilot.press("right_curly_bracket")         # } the next vCPU, { the previous
        await settle(pilot, app)
        assert (app.selected_vcpu, view(app).vcpu) == (1, 1)
        assert app.query_one(GuestsPane).cursor_row == 2
        await pilot.press("left_curly_bracket")
        await settle(pilot, app)
        assert (app.selected_vcpu, view(app).vcpu) == (0, 0)
        await pilot.press("right_square_bracket")        # the next guest still goes guest by guest
        await settle(pilot, app)
        assert app.selected == "h" and app.query_one(GuestsPane).cursor_row == 3


async def test_step_steps_the_selected_vcpu_alone(make_app):
    app = make_app(smprace())
    async with app.run_test(size=(80, 24)) as pilot:
        await both_started(pilot, app)
        g = app.monitor.guest("race")
        for vcpu in (1, 0, 1):
            await pick(pilot, app, "race", vcpu)
            before = [c.icount for c in g.vcpus]
            eip = view(app).regs.eip
            await pilot.press("s")
            await settle(pilot, app)
            after = [c.icount for c in g.vcpus]
            assert after[vcpu] == before[vcpu] + 1 and after[1 - vcpu] == before[1 - vcpu]
            assert view(app).vcpu == vcpu and view(app).state == "paused"
            assert view(app).regs.eip == g.vcpus[vcpu].eip
            assert view(app).regs.eip != eip or "rep" in str(app.query_one(DisasmPane).lines)
        assert "eip" in app.query_one(RegistersPane).changed


async def test_a_vcpu_that_cannot_step_says_so(make_app):
    app = make_app(multitask_and_hello())
    notes = []
    async with app.run_test(size=(80, 24)) as pilot:
        app.notify = lambda message, **kw: notes.append(message)
        await settle(pilot, app, 2)
        await pilot.press("space")
        await settle(pilot, app)
        await pick(pilot, app, "m", 1)
        before = view(app).icount
        await pilot.press("s")
        await settle(pilot, app)
        app.refresh_views()
        assert view(app).icount == before and view(app).regs.eip == 0xFFF0
        assert any("m cpu1" in n and "STARTUP IPI" in n for n in notes)


async def test_run_to_and_step_over_wait_for_the_selected_vcpu(make_app):
    app = make_app(smprace())
    async with app.run_test(size=(120, 40)) as pilot:
        await both_started(pilot, app)
        engine = app.engine
        passed = []
        original = engine._passed_by_another

        def spy(g, addrs):
            passed.append(original(g, addrs))
            return passed[-1]
        engine._passed_by_another = spy
        g = app.monitor.guest("race")
        syms = app.symbols["race"]
        for vcpu in (1, 0, 1):
            await pick(pilot, app, "race", vcpu)
            first = g.vcpus[vcpu].icount
            await pilot.press("g", *"node_release", "enter")
            await until(pilot, app, lambda: view(app).state == "paused" and g.vcpus[vcpu].icount > first)
            assert g.pc.running.index == vcpu                # the one that stopped is the selected one
            assert view(app).regs.eip == syms.lookup("node_release") == g.vcpus[vcpu].eip
            assert not view(app).breakpoints and not engine.temp_breaks      # the run-to's breakpoint is gone
        assert True in passed                                # the other vCPU got there first, and ran on
        # step over cpu_loop's call of work_on: the selected vCPU runs the callee and stops
        # after the call
        call_at, after_call = _call_in(syms.lookup("cpu_loop"), syms.lookup("work_on"))
        await pilot.press("g", *hex(call_at), "enter")
        await until(pilot, app, lambda: view(app).state == "paused" and g.vcpus[1].eip == call_at)
        assert g.pc.running.index == 1
        before = g.vcpus[1].icount
        await pilot.press("n")
        await until(pilot, app, lambda: view(app).state == "paused" and g.vcpus[1].eip == after_call)
        assert g.vcpus[1].icount > before + 5 and g.pc.running.index == 1
        assert view(app).vcpu == 1 and view(app).regs.eip == after_call


async def test_breakpoints_are_shared_by_every_vcpu(make_app):
    app = make_app(smprace())
    async with app.run_test(size=(120, 40)) as pilot:
        await both_started(pilot, app)
        g = app.monitor.guest("race")
        work_on = app.symbols["race"].lookup("work_on")
        await pilot.press("g", *"work_on", "enter")
        await until(pilot, app, lambda: view(app).state == "paused" and view(app).regs.eip == work_on)
        await pilot.press("b")                           # a breakpoint at the cursor: work_on
        await settle(pilot, app)
        assert view(app).breakpoints == {work_on} and all(c.breakpoints == {work_on} for c in g.vcpus)
        hits = set()
        for _ in range(100):                             # both vCPUs stop there, each running off it
            await pilot.press("space")
            await settle(pilot, app)
            await until(pilot, app, lambda: view(app).state == "paused")
            assert g.pc.running.eip == work_on
            hits.add(g.pc.running.index)
            if hits == {0, 1}:
                break
        assert hits == {0, 1}
        await pick(pilot, app, "race", g.pc.running.index)      # the disassembly follows that vCPU to work_on
        assert app.query_one(DisasmPane).cursor_addr == work_on
        await pilot.press("b")                           # and off again, for both
        await settle(pilot, app)
        assert not view(app).breakpoints and not any(c.breakpoints for c in g.vcpus)


async def test_events_filter_by_vcpu_and_name_it(make_app):
    app = make_app(smprace() + [GuestSpec(name="h", kernel=str(B / "hello.elf"), mem=8 << 20)])
    async with app.run_test(size=(120, 40)) as pilot:
        await both_started(pilot, app)
        await pilot.press("e")
        await settle(pilot, app)
        pane = app.query_one(EventsPane)
        table = app.query_one("#event-table", DataTable)

        def kinds():
            return [str(table.get_row_at(i)[2]) for i in range(table.row_count)]
        assert {k.split()[0] for k in kinds()} == {"cpu0", "cpu1"}      # each line names its vCPU
        seen = []
        for _ in range(3):                               # F: all -> cpu0 -> cpu1 -> all
            await pilot.press("F")
            await settle(pilot, app)
            seen.append(({k.split()[0] for k in kinds()}, view(app).event_vcpu))
            counts = str(app.query_one("#event-counts").render())
            assert ("cpu" in counts) == (view(app).event_vcpu is not None)
        assert seen == [({"cpu0"}, 0), ({"cpu1"}, 1), ({"cpu0", "cpu1"}, None)]
        assert all(e.guest == "race" for e in pane._events)
        await pilot.press("F", "F")                      # cpu1's only
        await settle(pilot, app)
        assert view(app).events and all(e.vcpu == 1 for e in view(app).events)    # taken from the log that way
        table.focus()
        await pilot.press("down")
        await pilot.pause()
        assert "vCPU 1" in str(app.query_one("#event-detail").render())
        await pilot.press("E")                           # every guest's: the vCPU beside a guest that has several
        await settle(pilot, app)
        labels = kinds()
        assert any(k.startswith("race/cpu") for k in labels) and any(k.startswith("h: ") for k in labels)
        await pilot.press("right_square_bracket", "E")   # hello alone: one processor, no vCPU named
        await settle(pilot, app)
        assert app.selected == "h" and not any(k.startswith("cpu") for k in kinds())


async def test_the_vcpu_filter_is_a_key_and_a_command(make_app):
    app = make_app(multitask_and_hello())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        keys = {b.key: b.action for b in app.BINDINGS}
        assert keys["F"] == "filter_vcpu"
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Filter events by vCPU" in titles and "Switch to the selected guest's next vCPU" in titles
        await pilot.press("ctrl+p")
        await pilot.press(*"Filter events by vCPU")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot, app)
        assert app.query_one(EventsPane).vcpu_of("m") == 0 and view(app, "m").event_vcpu == 0
