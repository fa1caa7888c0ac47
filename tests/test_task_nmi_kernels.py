"""Self-contained kernels through the command line: one sends itself an NMI
through the local APIC (self shorthand), then divides by zero, both
handled; one switches tasks (CALL to a TSS, IRET back, #DE through a task
gate).  Each prints the same bytes bare and under the monitor, retires the
same instructions, and a recorded session of it replays exactly."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

from tests.monitor.kit import ENTRY, tiny_kernel

ROOT = Path(__file__).resolve().parents[1]
SVR, ICR_LO = 0xFEE000F0, 0xFEE00300
NMI_SELF = (1 << 18) | (4 << 8) | (1 << 14)
NMI_H, DE_H, DATA = ENTRY + 0x100, ENTRY + 0x140, ENTRY + 0x200
GDT, GDTP, IDT, IDTP = DATA, DATA + 0x20, DATA + 0x40, DATA + 0x60


def _p32(v: int) -> bytes:
    return struct.pack("<I", v)


def _putc(ch: str) -> bytes:                    # push eax; push edx; mov dx, 0x3f8; mov al, ch; out; pop; pop
    return b"\x50\x52\x66\xba\xf8\x03\xb0" + ch.encode() + b"\xee\x5a\x58"


def _gate(off: int) -> bytes:
    return struct.pack("<HHHH", off & 0xFFFF, 0x08, 0x8E00, off >> 16)


def nmi_kernel() -> bytes:
    main = (b"\x0f\x01\x15" + _p32(GDTP) + b"\x0f\x01\x1d" + _p32(IDTP)         # lgdt, lidt
            + b"\xbc" + _p32(0x90000)                                           # mov esp
            + b"\xc7\x05" + _p32(SVR) + _p32(0x1FF)                             # APIC on
            + b"\xc7\x05" + _p32(ICR_LO) + _p32(NMI_SELF)                       # NMI to self
            + _putc("A")
            + b"\x31\xc9\xb8" + _p32(1) + b"\xf7\xf1"                           # xor ecx,ecx; mov eax,1; div ecx
            + _putc("D") + _putc("\n") + b"\xf4")
    image = bytearray(0x80 + 0x200)
    image[0:len(main)] = main
    nmi = _putc("N") + b"\xcf"
    de = _putc("Z") + b"\x83\x04\x24\x02\xcf"                                 # add dword [esp], 2; iret
    image[0x100:0x100 + len(nmi)] = nmi
    image[0x140:0x140 + len(de)] = de
    gdt = struct.pack("<QQQ", 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF)
    image[0x200:0x218] = gdt
    image[0x220:0x226] = struct.pack("<HI", len(gdt) - 1, GDT)
    idt = _gate(DE_H) + _gate(DE_H) + _gate(NMI_H)                              # vectors 0, 1, 2
    image[0x240:0x240 + len(idt)] = idt
    image[0x260:0x266] = struct.pack("<HI", len(idt) - 1, IDT)
    return tiny_kernel(bytes(image))


def tvmm(*args):
    return subprocess.run([sys.executable, "-m", "tvmm", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_nmi_then_divide_error_bare_virtualized_and_replayed(tmp_path):
    kernel = tmp_path / "nmi.bin"
    kernel.write_bytes(nmi_kernel())
    args = ["run", "--headless", "--stats", "--max-insns", "100000", "--guest", f"kernel={kernel}"]
    virt = tvmm(*args, "--record", tmp_path / "s.jsonl", "--record-every", "5")
    bare = tvmm("run", "--headless", "--bare", "--stats", "--max-insns", "100000", kernel)
    assert virt.returncode == 0 and bare.returncode == 0, (virt.stderr, bare.stderr)
    assert virt.stdout == bare.stdout == "NAZD\n"
    insns = [line for line in virt.stderr.splitlines() if "instructions:" in line]
    assert insns == [line for line in bare.stderr.splitlines() if "instructions:" in line]
    replay = tvmm("replay", tmp_path / "s.jsonl")
    assert replay.returncode == 0 and "matches" in replay.stderr, replay.stderr


TSS_A, TSS_B, TSS_C = DATA + 0x100, DATA + 0x180, DATA + 0x200
GDTP6 = DATA + 0x38                     # the six-entry GDT runs past GDTP


def _tss(eip: int, esp: int) -> bytes:
    out = bytearray(0x68)
    struct.pack_into("<II", out, 0x20, eip, 0x2)
    struct.pack_into("<I", out, 0x38, esp)
    for i, sel in enumerate((0x10, 0x08, 0x10, 0x10, 0x10, 0x10)):
        struct.pack_into("<I", out, 0x48 + 4 * i, sel)
    return bytes(out)


def _tss_desc(base: int) -> int:
    return 0x67 | (base & 0xFFFFFF) << 16 | 0x89 << 40 | (base >> 24) << 56


def task_kernel() -> bytes:
    b_task, c_task = ENTRY + 0x100, ENTRY + 0x140
    main = (b"\x0f\x01\x15" + _p32(GDTP6) + b"\x0f\x01\x1d" + _p32(IDTP)
            + b"\xbc" + _p32(0x90000)
            + b"\x66\xb8\x18\x00\x0f\x00\xd8"                                # ltr 0x18
            + _putc("T") + b"\x9a" + _p32(0) + b"\x20\x00"                      # call 0x20:0 (TSS B)
            + _putc("R")
            + b"\x31\xc9\xb8" + _p32(1) + b"\xf7\xf1"                           # #DE: task gate to TSS C
            + _putc("D") + _putc("\n") + b"\xf4")
    b_body = _putc("B") + b"\xcf"                                                 # iret (a task return)
    c_body = _putc("Z") + b"\x83\x05" + _p32(TSS_A + 0x20) + b"\x02" + b"\xcf"   # skip the DIV; iret
    image = bytearray(TSS_C + 0x68 - ENTRY)
    image[0:len(main)] = main
    for at, body in ((b_task, b_body), (c_task, c_body)):                       # each task loops: body; jmp
        code = body + b"\xeb" + bytes([(-(len(body) + 2)) & 0xFF])
        image[at - ENTRY:at - ENTRY + len(code)] = code
    gdt = struct.pack("<6Q", 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF, _tss_desc(TSS_A), _tss_desc(TSS_B),
                      _tss_desc(TSS_C))
    image[GDT - ENTRY:GDT - ENTRY + len(gdt)] = gdt
    image[GDTP6 - ENTRY:GDTP6 - ENTRY + 6] = struct.pack("<HI", len(gdt) - 1, GDT)
    idt = struct.pack("<HHHH", 0, 0x28, 0x8500, 0)                               # vector 0: task gate
    image[IDT - ENTRY:IDT - ENTRY + 8] = idt
    image[IDTP - ENTRY:IDTP - ENTRY + 6] = struct.pack("<HI", len(idt) - 1, IDT)
    image[TSS_B - ENTRY:TSS_B - ENTRY + 0x68] = _tss(b_task, 0x8F000)
    image[TSS_C - ENTRY:TSS_C - ENTRY + 0x68] = _tss(c_task, 0x8E000)
    return tiny_kernel(bytes(image))


def test_task_switches_bare_virtualized_and_replayed(tmp_path):
    kernel = tmp_path / "tasks.bin"
    kernel.write_bytes(task_kernel())
    args = ["run", "--headless", "--stats", "--max-insns", "100000", "--guest", f"kernel={kernel}"]
    virt = tvmm(*args, "--record", tmp_path / "s.jsonl", "--record-every", "7")
    bare = tvmm("run", "--headless", "--bare", "--stats", "--max-insns", "100000", kernel)
    assert virt.returncode == 0 and bare.returncode == 0, (virt.stderr, bare.stderr)
    assert virt.stdout == bare.stdout == "TBRZD\n"
    assert "task-switch 4" in virt.stderr                                         # CALL, IRET, #DE, IRET
    insns = [line for line in virt.stderr.splitlines() if "instructions:" in line]
    assert insns == [line for line in bare.stderr.splitlines() if "instructions:" in line]
    replay = tvmm("replay", tmp_path / "s.jsonl")
    assert replay.returncode == 0 and "matches" in replay.stderr, replay.stderr
