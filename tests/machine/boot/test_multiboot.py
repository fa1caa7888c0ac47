"""Multiboot v1 loading (spec sections 3.1-3.3) with hand-built kernels."""

from __future__ import annotations

import struct

import pytest

from tvmm.machine import CPU, PhysicalMemory, StopKind
from tvmm.machine.boot import BootError
from tvmm.machine.boot import multiboot as mb

LOAD = 0x100000


def mb_header(flags=0, aout=None) -> bytes:
    h = struct.pack("<III", mb.HEADER_MAGIC, flags, (-(mb.HEADER_MAGIC + flags)) & 0xFFFFFFFF)
    if aout:
        h += struct.pack("<IIIII", *aout)
    return h


# mov [0x5000], ebx ; mov [0x5004], eax ; hlt
KERNEL_CODE = bytes.fromhex("891d00500000a304500000f4")


def elf32(body: bytes, paddr=LOAD, vaddr=None, memsz=None, entry=None, machine=3, klass=1) -> bytes:
    vaddr = paddr if vaddr is None else vaddr
    phoff, ehsize = 52, 52
    off = phoff + 32
    ident = b"\x7fELF" + bytes([klass, 1, 1]) + bytes(9)
    eh = ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, vaddr if entry is None else entry, phoff, 0, 0,
                             ehsize, 32, 1, 40, 0, 0)
    ph = struct.pack("<IIIIIIII", 1, off, vaddr, paddr, len(body), memsz or len(body), 7, 0x1000)
    return eh + ph + body


def boot(image: bytes, cmdline="console=ttyS0", modules=None, tmp_path=None):
    mem = PhysicalMemory(16 << 20)
    path = "kernel.elf"
    info = mb.load(mem, path, cmdline, modules, image=image)
    cpu = CPU(mem)
    mb.enter(cpu, info)
    return mem, cpu, info


def test_elf_kernel_boots_with_the_multiboot_machine_state():
    # header first, then the code; entry right after the 12-byte header
    image = elf32(mb_header(mb.MB_MEMORY_INFO) + KERNEL_CODE, entry=LOAD + 12)
    mem, cpu, info = boot(image)
    assert info.entry == LOAD + 12
    stop = cpu.run(100)
    assert stop.kind == StopKind.HALTED
    assert mem.read(0x5004, 4) == mb.BOOT_MAGIC
    ebx = mem.read(0x5000, 4)
    flags, lower, upper = (mem.read(ebx + o, 4) for o in (0, 4, 8))
    assert flags & mb.INFO_MEMORY and flags & mb.INFO_MMAP and flags & mb.INFO_CMDLINE
    assert lower == 639 and upper == (16 << 10) - 1024
    cmd = mem.read_bytes(mem.read(ebx + 16, 4), 14)
    assert cmd == b"console=ttyS0\0"
    name = mem.read_bytes(mem.read(ebx + 64, 4), 5)
    assert name == b"tvmm\0"
    length, addr = mem.read(ebx + 44, 4), mem.read(ebx + 48, 4)
    entries = [struct.unpack_from("<IQQI", mem.read_bytes(addr + i, 24)) for i in range(0, length, 24)]
    assert (20, 0x100000, (16 << 20) - 0x100000, 1) in entries
    assert all(e[0] == 20 for e in entries)


def test_bss_is_zeroed_and_virtual_entry_is_translated():
    image = elf32(mb_header() + KERNEL_CODE, paddr=LOAD, vaddr=0x80100000, memsz=0x3000,
                  entry=0x80100000 + 12)
    mem = PhysicalMemory(16 << 20)
    mem.fill(LOAD + 0x100, 0x2000, 0xAA)            # garbage where the bss goes
    info = mb.load(mem, "k", "", image=image)
    assert info.entry == LOAD + 12                  # as QEMU does
    assert mem.read_bytes(LOAD + 0x100, 0x2000) == bytes(0x2000)


def test_aout_kludge_and_modules(tmp_path):
    mod = tmp_path / "initrd"
    mod.write_bytes(b"module-data")
    hdr_size = 32
    code = KERNEL_CODE
    # a raw binary: header at file offset 0 loaded at LOAD
    image = mb_header(mb.MB_AOUT_KLUDGE | mb.MB_PAGE_ALIGN,
                      (LOAD, LOAD, LOAD + hdr_size + len(code), LOAD + 0x2000, LOAD + hdr_size)) + code
    mem, cpu, info = boot(image, modules=[(str(mod), "initrd arg")])
    assert cpu.run(100).kind == StopKind.HALTED
    (start, end, string), = info.modules
    assert start % 4096 == 0 and start >= LOAD + 0x2000
    assert mem.read_bytes(start, end - start) == b"module-data"
    ebx = mem.read(0x5000, 4)
    assert mem.read(ebx, 4) & mb.INFO_MODS and mem.read(ebx + 20, 4) == 1
    m_start, m_end, m_str = (mem.read(mem.read(ebx + 24, 4) + o, 4) for o in (0, 4, 8))
    assert (m_start, m_end) == (start, end)
    assert mem.read_bytes(m_str, 11) == b"initrd arg\0"


def test_information_structure_never_overwrites_the_kernel():
    """kvm-unit-tests' realmode is linked at 0x8000 over 0x9000, where the structure usually goes."""
    body = mb_header() + KERNEL_CODE + bytes(range(256)) * 32        # 8 KiB + 24: 0x8000..0xA018
    image = elf32(body, paddr=0x8000, entry=0x8000 + 12)
    mem, cpu, info = boot(image)
    assert mem.read_bytes(0x8000, len(body)) == body                  # the kernel's bytes, intact
    assert not (0x8000 - 0x1000 < info.info_addr < 0x8000 + len(body))
    assert info.info_addr < 0x9F000 and info.info_addr % 0x1000 == 0
    assert cpu.regs[3] == info.info_addr
    assert cpu.run(100).kind == StopKind.HALTED
    ebx = mem.read(0x5000, 4)
    assert ebx == info.info_addr and mem.read(ebx + 4, 4) == 639
    assert mem.read_bytes(mem.read(ebx + 16, 4), 14) == b"console=ttyS0\0"


def test_information_structure_goes_above_a_kernel_that_fills_low_memory():
    image = elf32(mb_header() + KERNEL_CODE, paddr=0x1000, memsz=0x9F000 - 0x1000, entry=0x1000 + 12)
    mem, cpu, info = boot(image)
    assert info.info_addr >= 0x100000 and info.info_addr % 0x1000 == 0
    assert cpu.run(100).kind == StopKind.HALTED
    assert mem.read(0x5000, 4) == info.info_addr


def test_structure_at_its_usual_place_when_free():
    image = elf32(mb_header() + KERNEL_CODE, entry=LOAD + 12)
    _mem, _cpu, info = boot(image)
    assert info.info_addr == mb.INFO_ADDR


@pytest.mark.parametrize("image,message", [
    (b"\x7fELF" + bytes(100), "no Multiboot header"),
    (bytes(64), "no Multiboot header"),
    (mb_header() + bytes(32), "not an ELF file"),
    (elf32(mb_header() + KERNEL_CODE, machine=62), "not a 32-bit x86 ELF"),
    (elf32(mb_header(1 << 5) + KERNEL_CODE), "requires features"),
    (elf32(mb_header() + KERNEL_CODE, paddr=0x7FF00000), "does not fit"),
])
def test_bad_kernels_are_one_clear_error(image, message):
    mem = PhysicalMemory(16 << 20)
    with pytest.raises(BootError, match=message) as ei:
        mb.load(mem, "k", "", image=image)
    assert "\n" not in str(ei.value)
    assert mem.read_bytes(LOAD, 64) == bytes(64)    # nothing was written


def test_missing_kernel_file(tmp_path):
    with pytest.raises(BootError, match="no such kernel file"):
        mb.load(PhysicalMemory(1 << 20), str(tmp_path / "nope.elf"))
