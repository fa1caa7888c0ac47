"""Whole-guest snapshots: save a guest's complete state and put it back.

A ``Snapshot`` holds the virtual CPU (registers, segment caches, the
guest's control registers, descriptor-table registers, MSRs, debug
registers, interrupt shadow, halt state, instruction count), every device's
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

from ..machine import segments

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


def take(guest) -> Snapshot:
    cpu, pc = guest.vcpu, guest.pc
    state = {f: getattr(cpu, f) for f in _CPU_FIELDS}
    state.update(regs=list(cpu.regs), eflags=cpu.get_eflags(), dr=list(cpu.dr), msr=dict(cpu.msr),
                 cpl=cpu.cpl, seg=[list(cpu.seg_sel), list(cpu.seg_base), list(cpu.seg_limit), list(cpu.seg_attr)])
    pages = bytearray()
    view = memoryview(guest.monitor.host.ram)
    for gpfn, hpfn in enumerate(guest.frames):
        page = view[hpfn * PAGE:(hpfn + 1) * PAGE]
        if page != _ZERO:
            pages += gpfn.to_bytes(4, "little") + page
    return Snapshot(guest.name, cpu.icount, guest.now(), state, tuple(d.snapshot() for d in pc.devices),
                    {"idle": pc.idle, "exit_status": pc.exit_status, "clock": pc.clock.now},
                    zlib.compress(bytes(pages), 1), bytes(guest.console),
                    (guest.state, guest.reason, guest.exit_status, guest.last_stop))


def restore(guest, snap: Snapshot) -> None:
    cpu, pc = guest.vcpu, guest.pc
    # memory first: its writes drop decoded code for the pages they change
    _restore_memory(guest, zlib.decompress(snap.memory))
    # time and devices
    pc.clock._heap.clear()
    pc.clock.now = snap.pc["clock"]
    pc.idle, pc.exit_status = snap.pc["idle"], snap.pc["exit_status"]
    for dev, saved in zip(pc.devices, snap.devices):
        dev.restore(saved)
    # the processor
    s = snap.cpu
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
    segments.refresh_bounds(cpu)
    cpu.shadow.reset_all(cpu)
    cpu._apply_real()
    cpu.stop_request = None
    cpu.dead = None
    cpu._refresh()
    del guest.console[:]
    guest.console += snap.console
    guest.state, guest.reason, guest.exit_status, guest.last_stop = snap.state


def _restore_memory(guest, pages: bytes) -> None:
    host = guest.monitor.host
    saved = {}
    for off in range(0, len(pages), 4 + PAGE):
        saved[int.from_bytes(pages[off:off + 4], "little")] = pages[off + 4:off + 4 + PAGE]
    view = memoryview(host.ram)
    for gpfn, hpfn in enumerate(guest.frames):
        want = saved.get(gpfn, _ZERO)
        if view[hpfn * PAGE:(hpfn + 1) * PAGE] != want:
            host.write_bytes(hpfn * PAGE, want)
