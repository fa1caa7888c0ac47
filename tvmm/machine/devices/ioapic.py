"""The I/O APIC: 24 interrupt pins routed to local APICs as interrupt messages.

Modelled after the Intel 82093AA I/O APIC datasheet, memory-mapped at
0xFEC00000:

- IOREGSEL (offset 0x00, bits 7:0 read/write) selects a register that IOWIN
  (offset 0x10, 32 bits) reads and writes (datasheet 3.1).
- IOAPICID (0x00): bits 27:24 read/write; IOAPICVER (0x01): 0x00170011
  (version 0x11, maximum redirection entry 0x17 = 24 pins); IOAPICARB
  (0x02): read-only, loaded with the ID whenever the ID register is written
  (datasheet 3.2.1, 3.2.3).
- Redirection table (0x10-0x3F): entry n is the pair 0x10 + 2n (low dword)
  and 0x11 + 2n (high dword).  Bits: 7:0 vector, 10:8 delivery mode
  (fixed, lowest priority, SMI, NMI, INIT, ExtINT: passed to the platform as
  given), 11 destination mode, 12 delivery status (read-only, always 0:
  messages are delivered instantly), 13 polarity (stored), 14 remote IRR
  (read-only), 15 trigger mode (1 = level), 16 mask, 63:56 destination.
  Reset value: masked, everything else 0.

Invariants:

- A pin's level is what its ``IrqLine`` says: True means asserted.  Sources
  drive logical assertion, so the polarity bit does not invert anything
  (as in QEMU; the bit is stored for the guest to read back).
- Edge-triggered pin: a rising edge while unmasked sends one message; edges
  while masked are lost (datasheet 3.2.4, "interrupt mask").
- Level-triggered pin: while asserted, unmasked and remote IRR clear, a
  message is sent and remote IRR set; ``eoi(vector)`` (the local APIC's EOI
  broadcast) clears remote IRR of every level entry with that vector and
  sends again if the pin is still asserted.  Unmasking, or switching to level
  mode, an asserted level pin delivers it (otherwise a device that asserted
  before the OS programmed the entry would never be served).  Switching an
  entry to edge mode clears its remote IRR.
- Every message goes to ``deliver(dest, dest_mode, vector, delivery_mode,
  level_triggered)``, which the platform routes to the right local APIC's
  ``accept``.  The I/O APIC knows nothing about ISA IRQ numbering: IRQ 0 is
  normally wired to pin 2 (the MP/ACPI interrupt source override) by the
  platform.

Accesses: IOREGSEL takes writes of any width (the low byte is used); IOWIN
reads of any width return the addressed bytes, IOWIN writes must be aligned
32-bit stores (others are dropped).  Offsets other than 0x00-0x03 and
0x10-0x13 read 0 and ignore writes.  Unimplemented register indexes read 0.

Not modelled: the APIC serial bus and its arbitration (IOAPICARB only holds
the value loaded from the ID), delivery failure and retry (delivery status
never reads 1), the EOI register of later (version 0x20) I/O APICs.
"""

from __future__ import annotations

from typing import Callable

from ..irq import IrqLine

IOAPIC_BASE = 0xFEC00000
IOAPIC_SIZE = 0x1000

NUM_PINS = 24
IOAPIC_VERSION = 0x11
VERSION_VALUE = ((NUM_PINS - 1) << 16) | IOAPIC_VERSION

OFF_IOREGSEL, OFF_IOWIN = 0x00, 0x10
REG_ID, REG_VERSION, REG_ARB, REG_REDIR = 0x00, 0x01, 0x02, 0x10

ENTRY_MASKED = 1 << 16
ENTRY_LEVEL = 1 << 15
ENTRY_REMOTE_IRR = 1 << 14
ENTRY_DELIVERY_STATUS = 1 << 12
# Guest-writable bits of an entry: vector, mode, dest mode, polarity, trigger,
# mask, destination (delivery status and remote IRR are read-only).
ENTRY_WRITABLE = 0xFF000000_0001AFFF
ENTRY_RESET = ENTRY_MASKED

DM_FIXED, DM_LOWEST, DM_SMI, DM_NMI, DM_INIT, DM_EXTINT = 0, 1, 2, 4, 5, 7


class IoApic:
    """An 82093AA I/O APIC (see the module docstring).

    ``deliver(dest, dest_mode, vector, delivery_mode, level_triggered)``
    receives every interrupt message; ``irq_line(n)`` is pin ``n``'s input;
    ``eoi(vector)`` must be called on a local APIC EOI of a level-triggered
    vector (wire ``LocalApic(on_eoi=ioapic.eoi)``).
    """

    def __init__(self, deliver: Callable[[int, int, int, int, bool], None] | None = None,
                 apic_id: int = 0, *, base: int = IOAPIC_BASE, name: str = "ioapic"):
        self.name = name
        self.deliver = deliver
        self.base = base
        self.initial_id = apic_id & 0xF
        self.lines = [IrqLine(f"{name}.pin{n}", lambda level, n=n: self._pin_changed(n, level))
                      for n in range(NUM_PINS)]
        self.reset()

    # -------------------------------------------------------------- lifecycle
    def attach(self, mem) -> None:
        """Claim [base, base + 4 KiB) on a PhysicalMemory."""
        mem.add_mmio(self.base, self.base + IOAPIC_SIZE, self, self.name)

    def irq_line(self, n: int) -> IrqLine:
        return self.lines[n]

    def reset(self) -> None:
        self.ioregsel = 0
        self.id = self.initial_id << 24
        self.arb = 0
        self.entries = [ENTRY_RESET] * NUM_PINS

    def snapshot(self) -> dict:
        return {"ioregsel": self.ioregsel, "id": self.id, "arb": self.arb,
                "entries": list(self.entries), "pins": [line.level for line in self.lines]}

    def restore(self, state: dict) -> None:
        self.ioregsel = state["ioregsel"]
        self.id = state["id"]
        self.arb = state["arb"]
        self.entries = list(state["entries"])
        for line, level in zip(self.lines, state["pins"]):
            line.level = bool(level)    # the pin's level, without an edge

    # ------------------------------------------------------------------- MMIO
    def mmio_read(self, offset: int, size: int) -> int:
        mask = (1 << (8 * size)) - 1
        if OFF_IOREGSEL <= offset < OFF_IOREGSEL + 4:
            return (self.ioregsel >> (8 * (offset - OFF_IOREGSEL))) & mask
        if OFF_IOWIN <= offset < OFF_IOWIN + 4:
            return (self.read_register(self.ioregsel) >> (8 * (offset - OFF_IOWIN))) & mask
        return 0

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        if offset == OFF_IOREGSEL:
            self.ioregsel = value & 0xFF
        elif offset == OFF_IOWIN and size == 4:
            self.write_register(self.ioregsel, value & 0xFFFFFFFF)

    # -------------------------------------------------------------- registers
    def read_register(self, index: int) -> int:
        if index == REG_ID:
            return self.id
        if index == REG_VERSION:
            return VERSION_VALUE
        if index == REG_ARB:
            return self.arb
        pin, high = self._entry_of(index)
        if pin is None:
            return 0
        return self.entries[pin] >> (32 if high else 0) & 0xFFFFFFFF

    def write_register(self, index: int, value: int) -> None:
        if index == REG_ID:
            self.id = self.arb = value & 0x0F000000
            return
        pin, high = self._entry_of(index)
        if pin is None:
            return      # read-only or unimplemented
        old = self.entries[pin]
        shift = 32 if high else 0
        merged = old & ~(0xFFFFFFFF << shift) | value << shift
        new = merged & ENTRY_WRITABLE | old & ENTRY_REMOTE_IRR
        if not new & ENTRY_LEVEL:
            new &= ~ENTRY_REMOTE_IRR
        self.entries[pin] = new
        self._service_level(pin)

    @staticmethod
    def _entry_of(index: int) -> tuple[int | None, bool]:
        if REG_REDIR <= index < REG_REDIR + 2 * NUM_PINS:
            return (index - REG_REDIR) >> 1, bool(index & 1)
        return None, False

    # ------------------------------------------------------------------ input
    def set_irq(self, pin: int, level: bool) -> None:
        """Drive pin ``pin`` (same as ``irq_line(pin).set(level)``)."""
        self.lines[pin].set(level)

    def _pin_changed(self, pin: int, level: bool) -> None:
        entry = self.entries[pin]
        if entry & ENTRY_LEVEL and (entry >> 8 & 7) != DM_NMI:   # NMI is always edge (datasheet 3.2.4)
            self._service_level(pin)
        elif level and not entry & ENTRY_MASKED:
            self._send(pin)

    def _service_level(self, pin: int) -> None:
        """Send a level entry's message if its pin is asserted and nothing is in flight."""
        entry = self.entries[pin]
        if (entry & ENTRY_LEVEL and not entry & (ENTRY_MASKED | ENTRY_REMOTE_IRR)
                and (entry >> 8 & 7) != DM_NMI and self.lines[pin].level):
            self.entries[pin] = entry | ENTRY_REMOTE_IRR
            self._send(pin)

    def _send(self, pin: int) -> None:
        entry = self.entries[pin]
        if self.deliver is not None:
            self.deliver(entry >> 56, entry >> 11 & 1, entry & 0xFF, entry >> 8 & 7,
                         bool(entry & ENTRY_LEVEL))

    def eoi(self, vector: int) -> None:
        """A local APIC's EOI for a level-triggered ``vector``: clear remote IRR, re-deliver."""
        for pin, entry in enumerate(self.entries):
            if entry & ENTRY_REMOTE_IRR and entry & 0xFF == vector:
                self.entries[pin] = entry & ~ENTRY_REMOTE_IRR
                self._service_level(pin)

    @property
    def pin_levels(self) -> list[bool]:
        return [line.level for line in self.lines]
