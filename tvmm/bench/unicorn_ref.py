"""Reference figures: run one benchmark workload in unicorn and print JSON.

Executed as a script in its own process by ``tvmm bench`` (never imported by
tvmm itself; the tests import it to use unicorn as an oracle, and unicorn is
only imported inside the functions).  Instructions are counted by the same
program run on tvmm: the workloads are deterministic, so both execute the same
instruction stream.  Unicorn counts REP iterations as one instruction each, as
tvmm does.

    unicorn_ref.py WORKLOAD                   a flat workload (workloads.py)
    unicorn_ref.py --kernel NAME [CMDLINE]    a kernel workload (kernels.py)
"""

import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))


def main(name: str) -> None:
    from unicorn import Uc, UC_ARCH_X86, UC_MODE_32
    from unicorn import x86_const as X
    from tvmm.bench import workloads as W  # data only

    w = next(x for x in W.ALL if x.name == name)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, W.MEM_SIZE)
    for pa, data in W.build_memory_image(w):
        uc.mem_write(pa, data)
    regmap = {"eax": X.UC_X86_REG_EAX, "ecx": X.UC_X86_REG_ECX, "edx": X.UC_X86_REG_EDX,
              "ebx": X.UC_X86_REG_EBX, "esp": X.UC_X86_REG_ESP, "ebp": X.UC_X86_REG_EBP,
              "esi": X.UC_X86_REG_ESI, "edi": X.UC_X86_REG_EDI}
    uc.reg_write(X.UC_X86_REG_ESP, W.STACK_TOP)
    for r, v in w.regs.items():
        uc.reg_write(regmap[r], v)
    if w.paging:
        uc.reg_write(X.UC_X86_REG_CR3, W.PD)
        uc.reg_write(X.UC_X86_REG_CR0, uc.reg_read(X.UC_X86_REG_CR0) | 0x80000001)
    end = W.CODE + w.code.index(b"\xf4")
    t0 = time.perf_counter()
    uc.emu_start(W.CODE, end)
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt}))


# --------------------------------------------------------- kernel workloads
LAPIC_BASE = 0xFEE00000      # one zero page: the ID register reads APIC ID 0
INFO_ADDR = 0x9000           # the Multiboot information structure (as tvmm's loader)
CMDLINE_ADDR = 0x9100        # ... and the command line after it
COM1 = 0x3F8


def run_kernel(name: str, cmdline: str = "") -> dict:
    """Boot kernel workload ``name`` (``kernels.ALL``) in unicorn as a
    Multiboot loader would, run it untimed to ``bench_start``, then time
    ``bench_start`` -> ``bench_done`` without per-instruction hooks.

    Returns ``{"seconds", "result", "console"}``: the timed stretch's wall
    time, the 32-bit ``bench_result`` and whatever the kernel wrote to COM1.
    Raises RuntimeError when the kernel does not get there (unicorn does not
    deliver ``int n`` through the IDT: it stops with UC_ERR_EXCEPTION, so
    the syscall workload cannot run here)."""
    from elftools.elf.elffile import ELFFile
    from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_32, Uc, UcError
    from unicorn import x86_const as X
    from tvmm.bench import kernels as K  # data only (paths, symbols)

    kw = K.by_name(name)
    syms = K.symbols(kw)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)            # protected mode, flat segments, paging off
    uc.mem_map(0, K.MEM)
    uc.mem_map(LAPIC_BASE, 0x1000)
    with open(kw.path, "rb") as f:
        elf = ELFFile(f)
        entry = elf.header.e_entry
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_memsz"]:
                uc.mem_write(seg["p_paddr"], seg.data().ljust(seg["p_memsz"], b"\0"))
    # Multiboot information (spec 3.3): memory sizes and, if any, the command
    # line; common.c's parse_n reads only flags bit 2 and the cmdline pointer.
    flags = 1 | (4 if cmdline else 0)
    uc.mem_write(INFO_ADDR, struct.pack("<IIIII", flags, 639, (K.MEM >> 10) - 1024, 0,
                                        CMDLINE_ADDR if cmdline else 0).ljust(0x58, b"\0"))
    uc.mem_write(CMDLINE_ADDR, cmdline.encode("latin-1") + b"\0")
    uc.reg_write(X.UC_X86_REG_EAX, 0x2BADB002)
    uc.reg_write(X.UC_X86_REG_EBX, INFO_ADDR)
    uc.reg_write(X.UC_X86_REG_EFLAGS, 0x2)     # interrupts off

    # Port I/O happens only outside the timed stretch (a panic's message, the
    # PIC set-up of x86_init): the serial port is always ready to send, its
    # bytes are kept; every other port reads 0xFF.  These hooks cost nothing
    # for instructions that are not in/out.
    console = bytearray()

    def on_in(uc, port, size, _):
        return 0x60 if port == COM1 + 5 else (1 << (8 * size)) - 1

    def on_out(uc, port, size, value, _):
        if port == COM1:
            console.append(value & 0xFF)

    uc.hook_add(UC_HOOK_INSN, on_in, None, 1, 0, X.UC_X86_INS_IN)
    uc.hook_add(UC_HOOK_INSN, on_out, None, 1, 0, X.UC_X86_INS_OUT)

    def run(begin, until, what):
        try:
            uc.emu_start(begin, until)
        except UcError as e:
            eip = uc.reg_read(X.UC_X86_REG_EIP)
            raise RuntimeError(f"unicorn: kernel workload {name} stopped {what} at {eip:#x} "
                               f"(cs {uc.reg_read(X.UC_X86_REG_CS):#x}): {e}; console {bytes(console)!r}")
        eip = uc.reg_read(X.UC_X86_REG_EIP)
        if eip != until:
            raise RuntimeError(f"unicorn: kernel workload {name} stopped {what} at {eip:#x}, "
                               f"not {until:#x}; console {bytes(console)!r}")

    run(entry, syms["bench_start"], "before bench_start")
    t0 = time.perf_counter()
    run(syms["bench_start"], syms["bench_done"], "in the timed stretch")
    dt = time.perf_counter() - t0
    result = struct.unpack("<I", uc.mem_read(syms["bench_result"], 4))[0]
    return {"seconds": dt, "result": result, "console": console.decode("latin-1")}


if __name__ == "__main__":
    if sys.argv[1] == "--kernel":
        r = run_kernel(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")
        print(json.dumps({"seconds": r["seconds"], "result": r["result"]}))
    else:
        main(sys.argv[1])
