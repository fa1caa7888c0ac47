"""Whole-guest snapshots: save a guest's complete state and put it back.

A ``Snapshot`` holds the virtual CPU (registers, segment caches, the
guest's control registers, descriptor-table registers, MSRs, debug
registers, interrupt shadow, halt state, NMI latch and blocking,
instruction count, x87 FPU state), every device's
own ``snapshot()`` (pending timers included), the PC's time bookkeeping, the
guest's RAM (non-zero pages, compressed), its console so far and its state.

Shadow page tables are not saved: they are a cache of the guest's tables,
so a restore drops them and they refill on demand (the guest cannot tell).
Decoded code is keyed by physical address and dropped by the memory writes
of the restore.  Debugger breakpoints and watchpoints belong to the
debugger, not the guest, and are left as they are.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from ..machine import debug, segments

PAGE = 4096
_ZERO = bytes(PAGE)
_CPU_FIELDS = ("eip", "cr2", "gdtr_base", "gdtr_limit", "idtr_base", "idtr_limit", "ldtr_sel", "ldtr_base",
               "ldtr_limit", "ldtr_attr", "tr_sel", "tr_base", "tr_limit", "tr_attr", "tsc_offset", "protected",
               "icount", "halted", "inhibit", "pending_db", "vcr0", "vcr3", "vcr4", "a20")


@dataclass(frozen=True)
class Snapshot:
    guest: str
    icount: int
    now: int
    cpu: dict
    devices: tuple
    pc: dict
    memory: bytes                 # zlib of (gpfn, page) for every non-zero page
    console: bytes
    state: tuple

    @property
    def size(self) -> int:
        return len(self.memory) + len(self.console) + 4096      # devices and registers: a few KiB


def cpu_state(cpu) -> dict:
    """One processor's registers and execution state."""
    state = {f: getattr(cpu, f) for f in _CPU_FIELDS}
    state.update(regs=list(cpu.regs), eflags=cpu.get_eflags(), dr=list(cpu.dr), msr=dict(cpu.msr),
                 cpl=cpu.cpl, seg=[list(cpu.seg_sel), list(cpu.seg_base), list(cpu.seg_limit), list(cpu.seg_attr)],
                 wait_sipi=cpu.wait_sipi, nmi_pending=cpu.nmi_pending, nmi_blocked=cpu.nmi_blocked)
    state["fpu"] = cpu.fpu.snapshot()            # x87: registers, CW/SW/tags, FIP/FDP/FOP
    return state


def take_state(guest) -> tuple:
    """Everything but RAM and the console: ``(cpu, devices, pc, state)``
    (``cpu`` is the bootstrap processor; the others are in ``pc["aps"]``)."""
    pc = guest.pc
    pcs = {"idle": pc.idle, "exit_status": pc.exit_status, "clock": pc.clock.now}
    if len(pc.cpus) > 1:
        pcs.update(aps=[cpu_state(c) for c in pc.cpus[1:]], smp=pc.smp_state())
    return (cpu_state(pc.cpu), tuple(d.snapshot() for d in pc.devices), pcs,
            (guest.state, guest.reason, guest.exit_status, guest.last_stop))


def take(guest) -> Snapshot:
    state, devices, pcs, gstate = take_state(guest)
    pages = bytearray()
    ram = guest.monitor.host.ram
    populated = guest.monitor.host.populated_pages()       # the rest are zeros: not even read
    for gpfn, hpfn in enumerate(guest.frames):
        if populated is None or hpfn in populated:
            page = ram[hpfn * PAGE:(hpfn + 1) * PAGE]
            if page != _ZERO:
                pages += gpfn.to_bytes(4, "little") + page
    return Snapshot(guest.name, guest.icount, guest.now(), state, devices, pcs,
                    zlib.compress(bytes(pages), 1), bytes(guest.console), gstate)


def restore(guest, snap: Snapshot) -> None:
    # memory first: its writes drop decoded code for the pages they change
    _restore_memory(guest, zlib.decompress(snap.memory))
    restore_state(guest, (snap.cpu, snap.devices, snap.pc, snap.state))
    del guest.console[:]
    guest.console += snap.console


def restore_state(guest, saved: tuple) -> None:
    """Put back what ``take_state`` saved (RAM and console are the caller's)."""
    s, devices, pcs, gstate = saved
    pc = guest.pc
    # time and devices
    pc.clock._heap.clear()
    pc.clock.now = pcs["clock"]
    pc.idle, pc.exit_status = pcs["idle"], pcs["exit_status"]
    for dev, state in zip(pc.devices, devices):
        dev.restore(state)
    # the processors
    _set_cpu_state(pc.cpu, s)
    for cpu, state in zip(pc.cpus[1:], pcs.get("aps", ())):
        _set_cpu_state(cpu, state)
    if "smp" in pcs:
        pc.restore_smp_state(pcs["smp"])
    guest.state, guest.reason, guest.exit_status, guest.last_stop = gstate


def _set_cpu_state(cpu, s: dict) -> None:
    for f in _CPU_FIELDS:
        setattr(cpu, f, s[f])
    cpu.regs[:] = s["regs"]
    cpu.dr[:] = s["dr"]
    cpu.msr = dict(s["msr"])
    cpu.lf_op = 0
    cpu.eflags = s["eflags"]
    sel, base, limit, attr = s["seg"]
    cpu.seg_sel[:], cpu.seg_base[:], cpu.seg_limit[:], cpu.seg_attr[:] = sel, base, limit, attr
    cpu.set_cpl(s["cpl"])
    cpu.wait_sipi = s.get("wait_sipi", False)
    cpu.nmi_pending = s.get("nmi_pending", False)
    cpu.nmi_blocked = s.get("nmi_blocked", False)
    if "fpu" in s:                               # snapshots older than the x87 keep the power-on FPU
        cpu.fpu.restore(s["fpu"])
    segments.refresh_bounds(cpu)
    cpu.shadow.reset_all(cpu)
    cpu._apply_real()
    cpu.stop_request = None
    debug.update_watch_pages(cpu)                # the restored DR7 and DRn
    cpu.stall_icount, cpu.stalls = -1, 0        # exceptions in a row count from here
    cpu.dead = None
    cpu._refresh()


def _restore_memory(guest, pages: bytes) -> None:
    host = guest.monitor.host
    saved = {}
    for off in range(0, len(pages), 4 + PAGE):
        saved[int.from_bytes(pages[off:off + 4], "little")] = pages[off + 4:off + 4 + PAGE]
    ram = host.ram
    populated = host.populated_pages()
    for gpfn, hpfn in enumerate(guest.frames):
        want = saved.get(gpfn)
        if want is None:
            if populated is not None and hpfn not in populated:
                continue                                   # zeros already, never backed
            want = _ZERO
        if ram[hpfn * PAGE:(hpfn + 1) * PAGE] != want:
            host.write_bytes(hpfn * PAGE, want)
