"""Issue 12, items 3-5 through the UI (Pilot): the disassembly starts only
at real instruction boundaries and decodes 16-bit code as 16-bit; the page
tables keep the guest's entry beside the shadow entry at 80 columns; typing
ahead into a slow guest's console loses nothing."""

from __future__ import annotations

import capstone
import pytest
from elftools.elf.elffile import ELFFile

from tests.monitor.kit import tiny_kernel
from tests.test_typed_ahead import SLOW_POLLER
from tvmm.guestspec import GuestSpec
from tvmm.ui.panes.disasm import DisasmPane
from tvmm.ui.panes.pages import PagesPane

from .conftest import B, settle, until

pytestmark = pytest.mark.asyncio


def view(app, name=None):
    return app.engine.views[name or app.selected]


def _boundaries_from(elf_path, start: int, stop: int) -> set[int]:
    """Instruction addresses decoding the ELF's .text forward from ``start`` reaches."""
    with open(elf_path, "rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        data, base = text.data(), text["sh_addr"]
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    return {i.address for i in md.disasm(data[start - base:stop - base + 16], start)}


async def test_every_line_above_eip_is_an_instruction_boundary_in_multitask(make_app):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("right_square_bracket")                  # multitask
        assert app.selected == "multitask"
        disasm = app.query_one(DisasmPane)
        syms = app.symbols["multitask"]
        checked = 0
        for _ in range(8):                                         # several stops in its loops
            await settle(pilot, app, 3)
            await pilot.press("space")                             # pause
            await settle(pilot, app)
            eip = view(app).regs.eip
            name = syms.name_at(eip)
            start = syms.lookup(name.split("+")[0])
            reached = _boundaries_from(B / "multitask.elf", start, eip)
            above = [a for a, _ in disasm.lines if a < eip]
            assert above, f"nothing shown above {eip:#x} ({name})"
            assert all(start <= a and a in reached for a in above), \
                [(hex(a), t) for a, t in disasm.lines if a < eip and a not in reached]
            assert eip in [a for a, _ in disasm.lines]
            checked += len(above)
            await pilot.press("space")                             # run on
            await settle(pilot, app)
        assert checked > 20


REAL_MODE = (bytes.fromhex(
    "b83412"        # 7c00: mov ax, 0x1234
    "40"            # 7c03: inc ax            (32-bit decoding reads b8 34 12 40 89 as one mov)
    "89c3"          # 7c04: mov bx, ax
    "ebfb"          # 7c06: jmp 0x7c03
), 0x7C00, True)

PROTECTED_16 = (bytes.fromhex(          # protected mode with a 16-bit code segment (CS.D = 0)
    "fa"            # 7c00: cli
    "0f0116307c"    # 7c01: lgdt [0x7c30]
    "0f20c0"        # 7c06: mov eax, cr0
    "0c01"          # 7c09: or al, 1
    "0f22c0"        # 7c0b: mov cr0, eax
    "ea137c0800"    # 7c0e: jmp 0x8:0x7c13
    "b83412"        # 7c13: mov ax, 0x1234
    "40"            # 7c16: inc ax
    "89c3"          # 7c17: mov bx, ax
    "ebfb"          # 7c19: jmp 0x7c16
    "8db40000" "90"                     # 7c1b: padding
    "0000000000000000"                  # 7c20: GDT: null descriptor
    "ffff0000009a0000"                  # 7c28: selector 8: code, base 0, limit 64K, D = 0
    "0f00207c0000"                      # 7c30: GDTR: limit 15, base 0x7c20
), 0x7C13, False)


@pytest.mark.parametrize("sector, first, real", [REAL_MODE, PROTECTED_16], ids=["real-mode", "protected-16"])
async def test_16_bit_code_is_shown_as_16_bit_code(make_app, tmp_path, sector, first, real):
    image = tmp_path / "boot.img"
    image.write_bytes(sector.ljust(510, b"\0") + b"\x55\xaa" + bytes(512 * 15))
    app = make_app([GuestSpec(name="boot", boot="disk", disk0=str(image), mem=1 << 20)])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, 2)
        await pilot.press("space")
        await settle(pilot, app)
        v = view(app)
        assert v.regs.protected is not real and not v.regs.code32
        disasm = app.query_one(DisasmPane)
        lines = dict(disasm.lines)
        assert v.regs.eip in (first + 3, first + 4, first + 6)
        assert lines[first] == "mov ax, 0x1234"              # above EIP: the CPU decoded it
        assert lines[first + 3] == "inc ax"
        assert lines[first + 4] == "mov bx, ax"
        assert lines[first + 6] == f"jmp {first + 3:#x}"
        shown = str(disasm.render())
        assert "inc ax" in shown and "eax" not in shown.split(f"{first:08x}")[1]


async def test_page_tables_keep_guest_and_shadow_entries_side_by_side_at_80x24(make_app):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, 4)                                # flaky pages by now
        await pilot.press("space", "p")
        await settle(pilot, app)
        table = app.query_one(PagesPane)
        assert table.layout_name == "narrow"
        labels = [str(c.label).strip() for c in table.columns.values()]
        assert labels[:3] == ["gva", "guest", "shadow"]
        assert table.virtual_size.width <= table.scrollable_content_region.width    # nothing cut off
        eip_page = view(app).regs.eip & ~0xFFF
        row = table.get_row_at(table.cursor_row)                   # the cursor is on EIP's page
        assert row[0].strip() == f"{eip_page:08x}"
        guest, shadow = row[1].split(), row[2].split()
        assert guest[1].startswith("P") and shadow[1].startswith("P")
        hpa = app.monitor.guest("flaky").gmem.hpa_page(int(guest[0], 16))
        assert int(shadow[0], 16) == hpa >> 12                     # the shadow names the guest's frame's host page
        await pilot.resize_terminal(160, 48)                       # room for every column again
        await settle(pilot, app)
        assert table.layout_name == "wide"
        assert [str(c.label) for c in table.columns.values()][:6] == \
            ["gva", "guest PDE", "guest PTE", "gpa", "shadow", "hpa"]
        await pilot.resize_terminal(80, 24)
        await settle(pilot, app)
        assert table.layout_name == "narrow" and table.row_count == 16


async def test_typing_ahead_into_a_slow_guests_console_loses_nothing(make_app, tmp_path):
    kernel = tmp_path / "slowpoll.bin"
    kernel.write_bytes(tiny_kernel(SLOW_POLLER))
    app = make_app([GuestSpec(name="slow", kernel=str(kernel), mem=4 << 20)])
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, app, lambda: view(app).console.endswith(b"> "))
        await pilot.press("i", *"echo hello tvmm", "enter")       # typed at once, read slowly
        await until(pilot, app, lambda: view(app).state == "halted")
        assert view(app).console.endswith(b"> echo hello tvmm\n")
        assert "echo hello tvmm" in str(app.query_one("#serial").render())

