"""Looking into a guest the way its own processor would: what debuggers and
the UI use.  Nothing here changes guest state (no accessed or dirty bits are
set, no device is touched).

- ``translate(guest, addr, physical)`` — a guest-virtual address through the
  guest's own page tables (or a guest-physical one as is) to guest-physical;
  None when the guest's tables do not map it.
- ``read(guest, addr, n, physical)`` / ``write(...)`` — bytes of guest RAM at
  that address; ``AccessError`` for unmapped addresses and device memory.
- ``walk(guest, gva)`` — the guest's page walk (``machine.mmu.
  translate_entries``, the processor's own, without its A/D stores) beside
  the monitor's shadow entry for the same address (``PageRow``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..machine import mmu
from ..machine.consts import CR0_PG, M32


class AccessError(Exception):
    """The address is not guest RAM as the guest's tables say."""


def translate(guest, addr: int, physical: bool = False, cpu=None) -> int | None:
    """Guest-virtual (as vCPU ``cpu`` maps it; default the bootstrap
    processor) or guest-physical -> guest-physical; None when unmapped."""
    if physical:
        return addr & M32
    cpu = cpu or guest.vcpu
    if not cpu.guest_cr(0) & CR0_PG:
        return addr & cpu.a20
    return mmu.translate_entries(guest.gmem.read, cpu.guest_cr(0), cpu.guest_cr(3), cpu.guest_cr(4), addr & M32,
                                 a20=cpu.a20).pa


def _spans(guest, addr: int, n: int, physical: bool, cpu=None):
    while n > 0:
        chunk = min(n, 0x1000 - (addr & 0xFFF))
        gpa = translate(guest, addr, physical, cpu)
        if gpa is None or guest.gmem.hpa_page(gpa >> 12) is None:
            raise AccessError(f"cannot access memory at {addr:#x}")
        yield gpa, chunk
        addr = (addr + chunk) & M32
        n -= chunk


def read(guest, addr: int, n: int, physical: bool = False, cpu=None) -> bytes:
    return b"".join(guest.gmem.read_bytes(gpa, k) for gpa, k in _spans(guest, addr, n, physical, cpu))


def write(guest, addr: int, data: bytes, physical: bool = False, cpu=None) -> None:
    spans = list(_spans(guest, addr, len(data), physical, cpu))       # all or nothing
    pos = 0
    for gpa, k in spans:
        guest.gmem.write_bytes(gpa, data[pos:pos + k])
        pos += k


@dataclass(frozen=True)
class PageRow:
    """One virtual page, as the guest maps it and as the shadow maps it."""
    gva: int
    pde: int | None            # the guest's directory entry (None: paging off)
    pte: int | None            # its table entry (None: 4 MiB page, not present, or paging off)
    gpa: int | None            # guest-physical page, or None when the guest does not map it
    shadow: int                # the shadow entry (0: not filled yet)
    hpa: int | None            # host-physical page the shadow names
    device: bool               # the guest-physical page is a device (emulated through the aperture)

    @property
    def write_protected(self) -> bool:
        """Writable for the guest but read-only in the shadow (dirty tracking)."""
        guest_w = self.pte & self.pde & 2 if self.pte is not None else (self.pde or 0) & 2
        return bool(self.shadow & 1 and not self.shadow & 2 and guest_w)


def walk(guest, gva: int, cpu=None) -> PageRow:
    """Page ``gva`` as vCPU ``cpu`` (default the bootstrap processor) sees
    it, beside the entry of that vCPU's shadow root."""
    cpu = cpu or guest.vcpu
    gva &= 0xFFFFF000
    shadow = guest.shadow.entry(gva, getattr(cpu, "shadow_root", None))
    hpa = shadow & 0xFFFFF000 if shadow & 1 else None
    if not cpu.guest_cr(0) & CR0_PG:
        gpa = gva & cpu.a20
        return PageRow(gva, None, None, gpa, shadow, hpa, guest.gmem.hpa_page(gpa >> 12) is None)
    w = mmu.translate_entries(guest.gmem.read, cpu.guest_cr(0), cpu.guest_cr(3), cpu.guest_cr(4), gva,
                              a20=cpu.a20)
    gpa = w.frame
    device = gpa is not None and guest.gmem.hpa_page(gpa >> 12) is None
    return PageRow(gva, w.pde, w.pte, gpa, shadow, hpa, device)


def flags(entry: int | None) -> str:
    if entry is None:
        return "-"
    names = [(1, "P"), (2, "W"), (4, "U"), (0x20, "A"), (0x40, "D"), (0x80, "S"), (0x100, "G")]
    return "".join(n if entry & bit else "." for bit, n in names)


def compact_flags(entry: int | None) -> str:
    """Five characters: present, writable, user, accessed, dirty (as ``flags``
    without page size and global), for narrow displays."""
    if entry is None:
        return "-"
    return "".join(n if entry & bit else "." for bit, n in ((1, "P"), (2, "W"), (4, "U"), (0x20, "A"), (0x40, "D")))
