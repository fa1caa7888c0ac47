"""The device protocol every PC device implements (Bochs's init/reset/
register_state; QEMU's VMState).

- ``reset()`` puts the device in its power-on state.
- ``snapshot() -> dict`` returns the device's *complete* state as plain data
  (ints, bytes, strs, bools, lists, dicts of those), enough for ``restore``
  to bring an identical device to the identical state.  Record/replay and the
  UI depend on this: a field that is not in the snapshot does not exist.
- ``restore(state)`` is the inverse; ``restore(snapshot())`` is a no-op.
- Devices claim port ranges on a ``PortBus`` and MMIO ranges on
  ``PhysicalMemory`` in ``attach``; they raise interrupts through ``IrqLine``
  objects and schedule work on the ``Clock``, never by reading a wall clock.
- Guest-visible behaviour may depend only on the guest's accesses, virtual
  time and recorded inputs (e.g. bytes typed into a UART).
"""

from __future__ import annotations

from typing import Protocol


class Device(Protocol):
    name: str

    def reset(self) -> None: ...
    def snapshot(self) -> dict: ...
    def restore(self, state: dict) -> None: ...
