"""The port-I/O bus: devices claim half-open port ranges ``[start, end)``.

Invariants: ranges never overlap (``add`` refuses); an access to a port no
device claims reads as all ones and writes are dropped; an access wider than
one port is offered whole to the device that claims its first port.
"""

from __future__ import annotations

from typing import Protocol


class PortDevice(Protocol):
    def port_read(self, port: int, size: int) -> int: ...
    def port_write(self, port: int, size: int, value: int) -> None: ...


class PortBus:
    def __init__(self):
        self._map: dict[int, tuple[PortDevice, int, int, str]] = {}
        self._ranges: list[tuple[int, int, str]] = []

    def add(self, start: int, end: int, device: PortDevice, name: str = "") -> None:
        if not 0 <= start < end <= 0x10000:
            raise ValueError(f"bad port range [{start:#x}, {end:#x})")
        for s, e, n in self._ranges:
            if start < e and s < end:
                raise ValueError(f"ports [{start:#x}, {end:#x}) of {name or '?'} overlap {n} [{s:#x}, {e:#x})")
        self._ranges.append((start, end, name))
        for p in range(start, end):
            self._map[p] = (device, start, end, name)

    def remove(self, start: int, end: int) -> None:
        self._ranges = [r for r in self._ranges if (r[0], r[1]) != (start, end)]
        for p in range(start, end):
            self._map.pop(p, None)

    def owner(self, port: int) -> str | None:
        e = self._map.get(port)
        return e[3] if e else None

    # The CPU's io interface.
    def port_in(self, port: int, size: int) -> int:
        e = self._map.get(port)
        if e is None:
            return (1 << (8 * size)) - 1
        return e[0].port_read(port, size) & ((1 << (8 * size)) - 1)

    def port_out(self, port: int, size: int, value: int) -> None:
        e = self._map.get(port)
        if e is not None:
            e[0].port_write(port, size, value & ((1 << (8 * size)) - 1))


def read_bytewise(read_byte, port: int, size: int) -> int:
    """A 16/32-bit access to a device with 8-bit registers: consecutive byte
    reads, little-endian (as the ISA bus splits it)."""
    return sum(read_byte(port + i) << (8 * i) for i in range(size))


def write_bytewise(write_byte, port: int, size: int, value: int) -> None:
    for i in range(size):
        write_byte(port + i, (value >> (8 * i)) & 0xFF)
