"""Interrupt lines: a device drives a level; a controller listens.

An ``IrqLine`` is a small object a device holds (as in TinyEMU's
``set_irq``): ``raise_()``/``lower()``/``set(level)`` change the level and
notify the one sink attached (an interrupt controller input).  Edge-triggered
sinks act on a rising edge; level-triggered ones read ``level``.
"""

from __future__ import annotations

from typing import Callable


class IrqLine:
    __slots__ = ("level", "_sink", "name")

    def __init__(self, name: str = "", sink: Callable[[bool], None] | None = None):
        self.level = False
        self._sink = sink
        self.name = name

    def connect(self, sink: Callable[[bool], None]) -> None:
        self._sink = sink

    def set(self, level: bool) -> None:
        level = bool(level)
        if level != self.level:
            self.level = level
            if self._sink is not None:
                self._sink(level)

    def raise_(self) -> None:
        self.set(True)

    def lower(self) -> None:
        self.set(False)

    def pulse(self) -> None:
        """An edge: raise then lower (for edge-triggered sources)."""
        self.set(True)
        self.set(False)
