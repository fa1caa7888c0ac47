"""The PC/AT's coprocessor error path: FERR# latched onto IRQ 13, cleared
through port F0h.

The processor asserts FERR# (``cpu.ferr``, see ``ops/x87.py``) when a waiting
x87 instruction finds an unmasked exception pending with CR0.NE = 0; the AT
wires it to IRQ 13.  Software acknowledges with a write to port F0h (DOS-era
handlers, Linux's ``math_error_irq``), which lowers the line; FNINIT and
FNCLEX lower it too.  Port F1h (coprocessor reset) is accepted and ignored.
Reads float high.

The line's level is not part of a snapshot (the PIC's latched request is):
after a restore the next FERR# assertion is a fresh edge.
"""

from __future__ import annotations

PORT_CLEAR_BUSY = 0xF0


class FpuErrorPort:
    name = "fpu-error"

    def __init__(self, irq13):
        self.irq = irq13

    def attach(self, bus) -> None:
        bus.add(PORT_CLEAR_BUSY, PORT_CLEAR_BUSY + 2, self, self.name)

    def port_read(self, port: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def port_write(self, port: int, size: int, value: int) -> None:
        if port == PORT_CLEAR_BUSY:
            self.irq.lower()

    def reset(self) -> None:
        self.irq.lower()
