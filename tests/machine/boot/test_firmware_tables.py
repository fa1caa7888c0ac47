"""The BDA and MP tables as a BIOS-less kernel (xv6's mpinit) finds them."""

from __future__ import annotations

import struct

from tvmm.machine.boot import firmware_tables as ft
from tvmm.machine.pc import PC


def find_mp(mem):
    """xv6's search: EBDA first KiB, then the last KiB of base memory, then the BIOS ROM."""
    ebda = mem.read(0x40E, 2) << 4
    areas = [(ebda, 1024)] if ebda else []
    areas.append(((mem.read(0x413, 2) * 1024) - 1024, 1024))
    areas.append((0xF0000, 0x10000))
    for base, length in areas:
        data = mem.read_bytes(base, length)
        for off in range(0, length - 15, 16):
            if data[off:off + 4] == b"_MP_" and sum(data[off:off + 16]) & 0xFF == 0:
                return base + off
    return None


def test_mp_tables_are_found_and_describe_the_pc():
    pc = PC(32 << 20)
    mem = pc.mem
    fp = find_mp(mem)
    assert fp is not None
    table = mem.read(fp + 4, 4)
    length = mem.read(table + 4, 2)
    data = mem.read_bytes(table, length)
    assert data[:4] == b"PCMP" and data[6] == 4 and sum(data) & 0xFF == 0
    assert struct.unpack_from("<I", data, 36)[0] == 0xFEE00000        # local APIC address
    entries, off, procs, ioapics, irqs = struct.unpack_from("<H", data, 34)[0], 44, [], [], {}
    for _ in range(entries):
        kind = data[off]
        if kind == 0:
            procs.append((data[off + 1], data[off + 3]))
            off += 20
            continue
        if kind == 2:
            ioapics.append((data[off + 1], struct.unpack_from("<I", data, off + 4)[0]))
        if kind == 3 and data[off + 1] == 0:
            irqs[data[off + 5]] = data[off + 7]
        off += 8
    assert procs == [(0, 3)]                                  # APIC ID 0, enabled + BSP
    assert ioapics == [(ft.IOAPIC_ID, 0xFEC00000)]
    assert irqs[0] == 2 and irqs[1] == 1 and irqs[4] == 4 and irqs[14] == 14
    # the I/O APIC's own ID register agrees with the table (xv6 checks this)
    mem.write(0xFEC00000, 4, 0)
    assert (mem.read(0xFEC00010, 4) >> 24) == ft.IOAPIC_ID


def test_bios_data_area():
    mem = PC(32 << 20).mem
    assert mem.read(0x400, 2) == 0x3F8 and mem.read(0x413, 2) == 639
    assert mem.read(0x40E, 2) << 4 == ft.EBDA
