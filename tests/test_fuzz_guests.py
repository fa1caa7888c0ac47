"""Random code as a guest (issue 12, item 7): random bytes run at ring 0
and ring 3 (tiny Multiboot kernels built here) and in real mode (a disk boot
sector), side by side with a sibling guest, through ``tvmm run --headless``
in-process.  Never a traceback, and the sibling's console output is
byte-identical to its output running alone.

Fixed seed and bounded counts: RUNS runs of GUESTS_PER_RUN random guests
each (see the module constants); a few seconds on one core.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from tvmm.cli import main

ROOT = Path(__file__).resolve().parents[1]
MULTITASK = ROOT / "samples" / "build" / "multitask.elf"

SEED = 20261204
RUNS = 6
RING0, RING3, BOOT_SECTORS = 3, 3, 2            # random guests of each kind per run
GUESTS_PER_RUN = RING0 + RING3 + BOOT_SECTORS
BUDGET = "8000"                                   # --max-insns: each guest's virtual time
CODE_LEN = 256

LOAD = 0x100000
ENTRY = LOAD + 32
GDT, GDTR, IDT, IDTR, TSS, HANDLER = LOAD + 0x400, LOAD + 0x440, LOAD + 0x500, LOAD + 0x600, LOAD + 0x700, LOAD + 0x800
CODE = LOAD + 0x1000
STACK0, STACK3 = 0x170000, 0x180000


def _descriptor(base: int, limit: int, access: int, flags: int) -> bytes:
    return struct.pack("<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
                       (flags << 4) | ((limit >> 16) & 0xF), base >> 24)


def random_kernel(code: bytes, ring: int) -> bytes:
    """A Multiboot (a.out kludge) kernel: GDT with ring 0 and ring 3 flat
    segments and a TSS, an IDT whose 32 exception gates go to ``cli; hlt``,
    then ``code`` at ring ``ring`` (an IRET to ring 3) with paging off."""
    magic, flags = 0x1BADB002, 0x00010000
    image = bytearray(CODE - LOAD + len(code))
    struct.pack_into("<8I", image, 0, magic, flags, (-(magic + flags)) & 0xFFFFFFFF, LOAD, LOAD, 0, 0, ENTRY)
    gdt = (bytes(8) + _descriptor(0, 0xFFFFF, 0x9A, 0xC) + _descriptor(0, 0xFFFFF, 0x92, 0xC)
           + _descriptor(0, 0xFFFFF, 0xFA, 0xC) + _descriptor(0, 0xFFFFF, 0xF2, 0xC)
           + _descriptor(TSS, 103, 0x89, 0x0))
    image[GDT - LOAD:GDT - LOAD + len(gdt)] = gdt
    struct.pack_into("<HI", image, GDTR - LOAD, len(gdt) - 1, GDT)
    for v in range(32):
        struct.pack_into("<HHBBH", image, IDT - LOAD + 8 * v, HANDLER & 0xFFFF, 0x08, 0, 0x8E, HANDLER >> 16)
    struct.pack_into("<HI", image, IDTR - LOAD, 32 * 8 - 1, IDT)
    struct.pack_into("<II", image, TSS - LOAD + 4, STACK0, 0x10)          # esp0, ss0
    image[HANDLER - LOAD:HANDLER - LOAD + 4] = b"\xfa\xf4\xeb\xfd"        # cli; hlt; jmp $-3
    pro = (b"\x0f\x01\x15" + struct.pack("<I", GDTR)          # lgdt [GDTR]
           + b"\x0f\x01\x1d" + struct.pack("<I", IDTR)        # lidt [IDTR]
           + b"\xb8\x28\x00\x00\x00\x0f\x00\xd8"              # mov eax, 0x28; ltr ax
           + b"\xbc" + struct.pack("<I", STACK0))             # mov esp, STACK0
    if ring == 3:
        pro += (b"\xb8\x23\x00\x00\x00"                        # mov eax, 0x23
                b"\x8e\xd8\x8e\xc0\x8e\xe0\x8e\xe8"            # mov ds/es/fs/gs, ax
                + b"\x68\x23\x00\x00\x00"                      # push ss3
                + b"\x68" + struct.pack("<I", STACK3)          # push esp3
                + b"\x68\x02\x00\x00\x00"                      # push eflags (IF off)
                + b"\x68\x1b\x00\x00\x00"                      # push cs3
                + b"\x68" + struct.pack("<I", CODE)            # push eip
                + b"\xcf")                                     # iret
    else:
        pro += b"\xe9" + struct.pack("<i", CODE - (ENTRY + len(pro) + 5))   # jmp CODE
    image[ENTRY - LOAD:ENTRY - LOAD + len(pro)] = pro
    image[CODE - LOAD:] = code
    return bytes(image)


def random_boot_sector(rng: random.Random) -> bytes:
    sector = bytearray(rng.randbytes(510)) + b"\x55\xaa"
    return bytes(sector) + rng.randbytes(512 * 7)          # a few more sectors to read


def _run(capsysbinary, *args: str) -> tuple[int, bytes, str]:
    rc = main(["run", "--headless", "--max-insns", BUDGET, *map(str, args)])
    out, err = capsysbinary.readouterr()
    return rc, out, err.decode("utf-8", "replace")


def _lines(raw: bytes) -> list[bytes]:
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line.rstrip(b"\r") for line in lines]


def test_random_code_as_guests_never_breaks_tvmm_or_a_sibling(capsysbinary, tmp_path):
    rng = random.Random(SEED)
    sibling = f"name=mt,kernel={MULTITASK},cmdline=forever,mem=4M"
    rc, alone, err = _run(capsysbinary, "--guest", sibling)
    assert "Traceback" not in err and alone, err
    want = _lines(alone)
    outcomes: dict[str, int] = {}
    for run in range(RUNS):
        guests = ["--guest", sibling]
        for i in range(GUESTS_PER_RUN):
            name = f"r{run}-{i}"
            if i < RING0 + RING3:
                ring = 0 if i < RING0 else 3
                path = tmp_path / f"{name}.elf"
                path.write_bytes(random_kernel(rng.randbytes(rng.randint(1, CODE_LEN)), ring))
                guests += ["--guest", f"name={name},kernel={path},mem=4M"]
            else:
                path = tmp_path / f"{name}.img"
                path.write_bytes(random_boot_sector(rng))
                guests += ["--guest", f"name={name},boot=disk,disk0={path},mem=4M"]
        rc, out, err = _run(capsysbinary, *guests)
        assert "Traceback" not in err, err
        assert isinstance(rc, int) and rc != 2, err
        got = [line[len(b"mt| "):] for line in out.split(b"\n") if line.startswith(b"mt| ")]
        assert got == want, f"run {run}: the sibling's output changed"
        outcomes[str(rc)] = outcomes.get(str(rc), 0) + 1
    assert sum(outcomes.values()) == RUNS


def test_the_ring3_prologue_reaches_ring3():
    """The hand-assembled prologue does what it says: the code runs at CPL 3,
    and a fault there goes through the TSS to the ring-0 handler."""
    from tvmm.guestspec import GuestSpec
    from tvmm.monitor.vmm import Monitor
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "k.elf"
        path.write_bytes(random_kernel(b"\xeb\xfe", 3))           # jmp $
        g = Monitor.with_guests([GuestSpec(name="k", kernel=str(path), mem=4 << 20)]).guests[0]
        g.run(1000)
        assert g.state == "running" and g.vcpu.cpl == 3 and g.vcpu.eip == CODE
        path.write_bytes(random_kernel(b"\x0f\x0b", 3))           # ud2: through the TSS to the handler
        g = Monitor.with_guests([GuestSpec(name="k", kernel=str(path), mem=4 << 20)]).guests[0]
        g.run(1000)
        assert g.vcpu.cpl == 0 and HANDLER <= g.vcpu.eip < HANDLER + 4 and g.state == "halted"
