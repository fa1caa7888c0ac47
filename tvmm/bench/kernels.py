"""Kernel-like workloads for ``tvmm bench``: sample kernels in C
(``samples/kbench``, built to ``samples/build/kbench-*.elf``) doing what
xv6 does on its hot paths: spinlocks, page-table building, fork's address
space copy, system calls, and call-heavy C at -O2 and -O0.

Each kernel boots by Multiboot with ``mem`` (256 MiB), sets itself up
(4 KiB page tables, paging on), then runs its workload from the symbol
``bench_start`` to ``bench_done`` (``cli; hlt``).  Only that stretch is
timed and counted: the run stops at a breakpoint on ``bench_start``,
records the instruction count and the time, drops the breakpoint and runs
to the halt.  The count includes the final ``cli; hlt`` (2 instructions;
unicorn stops before them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..bundled import BUILD
from ..machine.errors import StopKind

MEM = 256 << 20
SLICE = 10**7


@dataclass
class KernelWorkload:
    name: str
    elf: str                    # file name in samples/build
    note: str
    unicorn: bool = True        # unicorn can run it (no IDT delivery needed)
    # Iterations `tvmm bench` runs (kernel command line n=N): about two
    # seconds, so that one-time costs (translating the hot code, and code a
    # guest's quanta cut in odd places) do not dominate the figure.
    bench_n: int = 0

    @property
    def path(self):
        return BUILD / self.elf


ALL = [
    KernelWorkload("lock", "kbench-lock.elf",
                   "xv6 acquire/release: pushcli/popcli, mycpu() reading the local APIC ID, xchg",
                   bench_n=16000),
    KernelWorkload("mappages", "kbench-mappages.elf",
                   "xv6 setupkvm: walkpgdir/mappages of 224 MiB with 4 KiB pages, kalloc+memset, freevm",
                   bench_n=8),
    KernelWorkload("fork", "kbench-fork.elf",
                   "xv6 copyuvm of 64 pages (byte memmove), then freevm", bench_n=6),
    KernelWorkload("syscall", "kbench-syscall.elf",
                   "ring-3 int $64 through a DPL-3 trap gate, alltraps, C dispatcher, iret",
                   unicorn=False, bench_n=20000),
    KernelWorkload("calls-O2", "kbench-calls-O2.elf", "call-heavy C (hash, list, strings, fib), -O2",
                   bench_n=400),
    KernelWorkload("calls-O0", "kbench-calls-O0.elf", "the same C at -O0", bench_n=250),
]


def by_name(name: str) -> KernelWorkload:
    return next(k for k in ALL if k.name == name)


def symbols(kw: KernelWorkload) -> dict:
    """The ELF's symbols by name (pyelftools)."""
    from elftools.elf.elffile import ELFFile
    with open(kw.path, "rb") as f:
        tab = ELFFile(f).get_section_by_name(".symtab")
        return {s.name: s["st_value"] for s in tab.iter_symbols() if s.name}


def _spec(kw: KernelWorkload, cmdline: str, mem: int):
    from ..guestspec import GuestSpec
    return GuestSpec(name=f"kbench-{kw.name}", kernel=str(kw.path), mem=mem, cmdline=cmdline)


def _finish(kw, stop_kind, icount0, icount1, t0, t1, mem, syms) -> dict:
    if stop_kind != StopKind.HALTED:
        raise RuntimeError(f"kernel workload {kw.name} did not reach bench_done")
    n, dt = icount1 - icount0, t1 - t0
    return {"instructions": n, "seconds": dt, "mips": n / dt / 1e6,
            "result": mem.read(syms["bench_result"], 4)}


def run_bare(kw: KernelWorkload, cmdline: str = "", mem: int = MEM, keep: bool = False) -> dict:
    """On the modelled PC without the monitor (as ``tvmm run --bare``).
    ``keep``: also return the PC (``"pc"``), to look at its memory."""
    from ..machine.boot import boot
    from ..machine.pc import PC
    syms = symbols(kw)
    spec = _spec(kw, cmdline, mem)
    pc = PC(spec.mem)
    boot(spec, pc.mem, pc.cpu, None)
    cpu = pc.cpu
    cpu.breakpoints.add(syms["bench_start"])
    cpu._refresh()
    stop = pc.run(10**10)
    if stop.kind != StopKind.BREAKPOINT:
        raise RuntimeError(f"kernel workload {kw.name} did not reach bench_start: {stop}")
    cpu.breakpoints.clear()
    cpu._refresh()
    n0, t0 = pc.cpu.icount, time.perf_counter()
    while True:
        stop = pc.run(SLICE)
        if stop.kind != StopKind.BUDGET:
            break
    t1 = time.perf_counter()
    if pc.cpu.eip + pc.cpu.seg_base[1] != syms["bench_done"] + 2:     # just past the hlt
        raise RuntimeError(f"kernel workload {kw.name} halted outside bench_done at {pc.cpu.eip:#x}")
    out = _finish(kw, stop.kind, n0, pc.cpu.icount, t0, t1, pc.mem, syms)
    if keep:
        out["pc"] = pc
    return out


def run_guest(kw: KernelWorkload, cmdline: str = "", mem: int = MEM, keep: bool = False) -> dict:
    """As a guest under the monitor: speed and exits by kind per million
    instructions of the timed stretch.  ``keep``: also the guest (``"guest"``)."""
    from ..monitor.events import EXIT_KINDS
    from ..monitor.vmm import Monitor
    syms = symbols(kw)
    spec = _spec(kw, cmdline, mem)
    monitor = Monitor(Monitor.host_size_for([spec]))
    g = monitor.add_guest(spec)
    g.vcpu.breakpoints.add(syms["bench_start"])
    g.breakpoints_changed()
    while g.runnable:
        monitor.run(SLICE)
    if g.state != "paused" or g.vcpu.eip + g.vcpu.seg_base[1] != syms["bench_start"]:
        raise RuntimeError(f"kernel workload {kw.name} did not reach bench_start as a guest: {g.state} {g.reason}")
    g.vcpu.breakpoints.clear()
    g.breakpoints_changed()
    before = dict(monitor.log.by_kind(g.name))
    g.resume()
    n0, t0 = g.icount, time.perf_counter()
    while g.runnable:
        monitor.run(SLICE)
    t1 = time.perf_counter()
    if g.state != "halted":
        raise RuntimeError(f"kernel workload {kw.name} did not finish as a guest: {g.state} {g.reason}")
    out = _finish(kw, StopKind.HALTED, n0, g.icount, t0, t1, g.gmem, syms)
    kinds = monitor.log.by_kind(g.name)
    n = out["instructions"]
    out["exits_per_minsn"] = {k: float(f"{(kinds.get(k, 0) - before.get(k, 0)) * 1e6 / n:.3g}")
                              for k in EXIT_KINDS if kinds.get(k, 0) - before.get(k, 0)}
    if keep:
        out["guest"] = g
    return out
