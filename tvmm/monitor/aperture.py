"""The device aperture: how guest device memory is emulated.

A region of host-physical address space above host RAM, claimed by this
object as memory-mapped I/O.  A shadow entry for a guest-physical page that
is not the guest's RAM (a local APIC, I/O APIC, CGA or test-device page, or a
hole) points at one page of the aperture, so the processor never reaches
RAM for it: every access arrives here with its offset, size and value, as a
hardware MMIO exit with decode assistance would, and is emulated against the
device of the guest that is running.

Slots are numbered per guest (``GuestApertureMap``); the aperture routes to
the running guest's map, so two guests' shadows may name the same aperture
page for different devices of their own.

The local APIC page is virtualized as VT-x's APIC-access page is: reads of
the registers that change only when the guest writes them (ID, version, TPR,
LVT entries, …) are served from a per-guest virtual-APIC page without an
exit; other reads and every write exit.  Kernels read the APIC ID constantly.
"""

from __future__ import annotations

from ..machine.devices.lapic import APIC_BASE
from . import events as ev
from .hostmem import APERTURE_BASE

PAGE = 4096
SLOTS = 8192                      # aperture pages: 32 MiB of host-physical space
HOLE_SLOT = 0                     # shared by every guest-physical page with nothing behind it


class GuestApertureMap:
    """One guest's aperture slots: slot -> guest-physical page."""

    def __init__(self, guest):
        self.guest = guest
        self.slot_of: dict[int, int] = {}       # gpfn -> slot (device pages)
        self.gpfn_of: list[int | None] = [None]  # slot -> gpfn; slot 0 is open bus
        self._vapic_exits = 0                  # static-register reads that reached the aperture

    def hpa(self, gpfn: int) -> int:
        """The aperture page for guest-physical page ``gpfn`` (not RAM):
        its own slot for a device page, the shared open-bus slot otherwise."""
        if gpfn not in self.guest.gmem.device_pages:
            return APERTURE_BASE + HOLE_SLOT * PAGE
        slot = self.slot_of.get(gpfn)
        if slot is None:
            if len(self.gpfn_of) >= SLOTS:
                raise RuntimeError("device aperture full")
            slot = len(self.gpfn_of)
            self.slot_of[gpfn] = slot
            self.gpfn_of.append(gpfn)
        return APERTURE_BASE + slot * PAGE

    def map_vapic(self) -> None:
        """Point every vCPU at its virtual-APIC page: the aperture page of
        the guest's local-APIC frame, whose static registers the processor
        then reads from the APIC's ``vregs`` without an exit."""
        lapic_gpfn = APIC_BASE >> 12
        pfn = self.hpa(lapic_gpfn) >> 12 if lapic_gpfn in self.guest.gmem.device_pages else -1
        for cpu, lapic in zip(self.guest.pc.cpus, self.guest.pc.lapics):
            cpu.vapic, cpu.vapic_pfn = lapic.vregs, pfn
            cpu.flush_tlb(False)

    @property
    def vapics(self) -> list[dict[int, int]]:
        """Per vCPU, its virtual-APIC page: register offset -> value."""
        return [lapic.vregs for lapic in self.guest.pc.lapics]

    @property
    def vapic(self) -> dict[int, int]:
        """The bootstrap processor's virtual-APIC page."""
        return self.vapics[0]

    @property
    def vapic_reads(self) -> int:
        """Reads served from a virtual-APIC page (by the processor or here)."""
        return self._vapic_exits + sum(cpu.vapic_reads for cpu in self.guest.pc.cpus)

    # -- emulation ------------------------------------------------------------------
    def read(self, slot: int, off: int, size: int) -> int:
        cpu = self.guest.pc.running
        if slot == HOLE_SLOT:
            cpu._record(ev.EXIT_MMIO, f"read of unbacked memory (offset {off:#x}/{size})")
            return (1 << (8 * size)) - 1
        gpa = self.gpfn_of[slot] * PAGE + off
        if gpa & ~0xFFF == APIC_BASE and (off & 0xF) == 0 and size == 4:
            v = self.guest.pc.lapics[cpu.index].vregs.get(off)
            if v is not None:                  # the processor's own fast path did not apply (a watchpoint)
                self._vapic_exits += 1
                return v
        v = self.guest.gmem.read(gpa, size)
        cpu._record(ev.EXIT_MMIO, f"read {gpa:#010x}/{size} -> {v:#x}")
        return v

    def write(self, slot: int, off: int, size: int, value: int) -> None:
        cpu = self.guest.pc.running
        if slot == HOLE_SLOT:
            cpu._record(ev.EXIT_MMIO, f"write to unbacked memory dropped (offset {off:#x}/{size})")
            return
        gpa = self.gpfn_of[slot] * PAGE + off
        cpu._record(ev.EXIT_MMIO, f"write {gpa:#010x}/{size} <- {value:#x}")
        self.guest.gmem.write(gpa, size, value)


class DeviceAperture:
    """The host MMIO region; routes each access to the running guest."""

    def __init__(self, monitor):
        self.monitor = monitor

    def attach(self, host_mem) -> None:
        host_mem.add_mmio(APERTURE_BASE, APERTURE_BASE + SLOTS * PAGE, self, "device-aperture")

    def _map(self) -> GuestApertureMap:
        guest = self.monitor.current
        if guest is None:
            raise RuntimeError("device aperture accessed with no guest running")
        return guest.aperture

    def mmio_read(self, offset: int, size: int) -> int:
        if (offset & 0xFFF) + size > PAGE:            # straddles two slots: byte by byte
            return sum(self.mmio_read(offset + i, 1) << (8 * i) for i in range(size))
        return self._map().read(offset >> 12, offset & 0xFFF, size)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        if (offset & 0xFFF) + size > PAGE:
            for i in range(size):
                self.mmio_write(offset + i, 1, (value >> (8 * i)) & 0xFF)
            return
        self._map().write(offset >> 12, offset & 0xFFF, size, value)
