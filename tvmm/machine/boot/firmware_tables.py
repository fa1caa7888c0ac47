"""What PC firmware leaves in low memory for a BIOS-less kernel to find.

- The BIOS data area: COM port addresses (0x400), the EBDA segment (0x40E)
  and the base memory size in KiB (0x413).
- An Intel MultiProcessor Specification 1.4 floating pointer ("_MP_") in the
  first KiB of the EBDA and, after it, a configuration table ("PCMP")
  describing the processor(s), the ISA bus, the I/O APIC and how ISA IRQs
  reach it (IRQ 0 on pin 2, like QEMU and real boards), so SMP-aware kernels
  such as xv6 find their hardware.

Invariants: every structure's bytes sum to 0 mod 256 as the spec requires;
the tables describe exactly the devices ``pc.PC`` builds.
"""

from __future__ import annotations

import struct

from ..native import CPUID_FEATURES, CPUID_SIGNATURE

EBDA = 0x9FC00
BASE_MEM_KIB = EBDA // 1024            # 639
LAPIC_ADDR = 0xFEE00000
IOAPIC_ADDR = 0xFEC00000
IOAPIC_ID = 1
# The MP table's processor entries report what CPUID does (native.py).
CPU_SIGNATURE, CPU_FEATURES = CPUID_SIGNATURE, CPUID_FEATURES


def _checksummed(data: bytearray, at: int) -> bytes:
    data[at] = (-sum(data)) & 0xFF
    return bytes(data)


def mp_config_table(ncpus: int = 1) -> bytes:
    entries = []
    for cpu in range(ncpus):
        flags = 1 | (2 if cpu == 0 else 0)                     # enabled; BSP
        entries.append(struct.pack("<BBBBII8x", 0, cpu, 0x14, flags, CPU_SIGNATURE, CPU_FEATURES))
    entries.append(struct.pack("<BB6s", 1, 0, b"ISA   "))
    entries.append(struct.pack("<BBBBI", 2, IOAPIC_ID, 0x11, 1, IOAPIC_ADDR))
    # I/O interrupt assignments: ExtINT on pin 0, ISA IRQ n on pin n (IRQ 0 on pin 2).
    entries.append(struct.pack("<BBHBBBB", 3, 3, 0, 0, 0, IOAPIC_ID, 0))
    for irq in range(16):
        if irq == 2:
            continue
        entries.append(struct.pack("<BBHBBBB", 3, 0, 0, 0, irq, IOAPIC_ID, 2 if irq == 0 else irq))
    # Local interrupt assignments: ExtINT on LINT0, NMI on LINT1 of every CPU.
    entries.append(struct.pack("<BBHBBBB", 4, 3, 0, 0, 0, 0xFF, 0))
    entries.append(struct.pack("<BBHBBBB", 4, 1, 0, 0, 0, 0xFF, 1))
    body = b"".join(entries)
    header = bytearray(struct.pack("<4sHBB8s12sIHHIHBB", b"PCMP", 44 + len(body), 4, 0, b"TVMM    ",
                                   b"PC          ", 0, 0, len(entries), LAPIC_ADDR, 0, 0, 0))
    return _checksummed(bytearray(header + body), 7)


def mp_floating_pointer(table_addr: int) -> bytes:
    fp = bytearray(struct.pack("<4sIBBB5s", b"_MP_", table_addr, 1, 4, 0, bytes(5)))
    return _checksummed(fp, 10)


def install(mem, ncpus: int = 1) -> None:
    """Write the BDA fields and the MP tables into guest-physical memory."""
    mem.write(0x400, 2, 0x3F8)                 # COM1
    mem.write(0x402, 2, 0x2F8)                 # COM2
    mem.write(0x40E, 2, EBDA >> 4)             # EBDA segment
    mem.write(0x413, 2, BASE_MEM_KIB)          # base memory in KiB
    table_addr = EBDA + 16
    mem.write_bytes(EBDA, mp_floating_pointer(table_addr))
    mem.write_bytes(table_addr, mp_config_table(ncpus))
