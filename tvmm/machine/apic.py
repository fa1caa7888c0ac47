"""Interrupt messages between local APICs: IPIs and I/O APIC routing.

Each processor of a PC has its own local APIC (``devices/lapic.py``) with
APIC ID = its index.  A message — an IPI written to a local APIC's ICR, or
an I/O APIC redirection — names its destination physically (an APIC ID,
0xFF: everyone) or logically (the flat model: a bit in each APIC's LDR;
the cluster model: a cluster in LDR[31:28] and a bit in LDR[27:24]), or
with a shorthand (self, all, all but self).  SDM vol. 3, 10.6.2.

Delivery modes (SDM 10.6.1):
- fixed: every target accepts the vector;
- lowest priority: one target, deterministically the one with the lowest
  task priority, ties to the lowest APIC ID (hardware may pick any);
- NMI: every target takes an NMI;
- INIT: every target is reset into wait-for-SIPI (the BSP too: it then
  waits for a STARTUP like the others), its local APIC reset;
- STARTUP: a target waiting for SIPI starts in real mode at
  ``vector << 12``; one that is not waiting ignores it (the usual second
  STARTUP of the INIT-SIPI-SIPI sequence).

Invariants: delivery is synchronous (a message is accepted before the
sending instruction retires), so it happens at the same guest time in
every run; the order targets are visited in is ascending APIC ID.
"""

from __future__ import annotations

DM_FIXED, DM_LOWEST, DM_NMI, DM_INIT, DM_STARTUP = 0, 1, 4, 5, 6
SH_NONE, SH_SELF, SH_ALL, SH_ALL_BUT_SELF = 0, 1, 2, 3


def matches(lapic, dest: int, dest_mode: int) -> bool:
    """Does ``lapic`` answer to destination ``dest`` (8 bits)?"""
    if dest_mode == 0:                                   # physical
        return dest == 0xFF or (lapic.id >> 24) == dest
    if dest == 0xFF:
        return True
    ldr = lapic.ldr >> 24
    if (lapic.dfr >> 28) == 0xF:                         # flat model
        return bool(ldr & dest)
    return (ldr >> 4) == (dest >> 4) and bool(ldr & dest & 0xF)     # cluster model


def targets(lapics, dest: int, dest_mode: int) -> list[int]:
    return [i for i, a in enumerate(lapics) if matches(a, dest, dest_mode)]


def deliver(pc, indices: list[int], mode: int, vector: int, level_triggered: bool = False) -> None:
    """Deliver one message to the processors ``indices`` of ``pc``."""
    if not indices:
        return
    lapics, cpus = pc.lapics, pc.cpus
    if mode == DM_LOWEST:
        indices = [min(indices, key=lambda i: (lapics[i].tpr, lapics[i].id >> 24, i))]
        mode = DM_FIXED
    for i in indices:
        if mode == DM_FIXED:
            lapics[i].accept(vector, level_triggered)
        elif mode == DM_NMI:
            cpus[i].nmi()
        elif mode == DM_INIT:
            lapics[i].reset()
            cpus[i].init_ipi()
        elif mode == DM_STARTUP:
            cpus[i].startup_ipi(vector)


def send_ipi(pc, source: int, dest: int, mode: int, vector: int, shorthand: int, level: bool,
             dest_mode: int) -> None:
    """An IPI written to processor ``source``'s ICR (the self shorthand
    with fixed delivery is handled in the local APIC)."""
    if mode == DM_INIT and not level:
        return                                           # de-assert: nothing to do
    n = len(pc.cpus)
    if shorthand == SH_ALL:
        indices = list(range(n))
    elif shorthand == SH_ALL_BUT_SELF:
        indices = [i for i in range(n) if i != source]
    elif shorthand == SH_SELF:
        indices = [source]
    else:
        indices = targets(pc.lapics, dest, dest_mode)
    deliver(pc, indices, mode, vector)
