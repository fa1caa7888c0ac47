"""QEMU's test and firmware-interface devices for the PC, and the POST code port 0x80.

Compatibility targets (QEMU sources and docs/specs/fw_cfg.rst, pc-testdev
as used by kvm-unit-tests):

``DebugExit`` - QEMU ``isa-debug-exit`` (hw/misc/debugexit.c).  QEMU's
  default is iobase 0x501, iosize 2; the usual kernel-test setup, and our
  default, is ``-device isa-debug-exit,iobase=0xf4,iosize=0x04``.  A write of
  any width to any port of the range requests exit with status
  ``(value << 1) | 1`` (``value`` as wide as the write), passed whole to
  ``on_exit(status)``: QEMU passes it to exit(), so a shell sees only its low
  8 bits.  Reads return 0 (QEMU's debug_exit_read).  The device does not stop
  the machine itself; the callback does (e.g. ``Stop.REQUEST``).

``FwCfg`` - QEMU ``fw_cfg`` through its legacy I/O interface
  (hw/nvram/fw_cfg.c, FW_CFG_IO_BASE 0x510): a 16-bit write to 0x510 selects
  an item and rewinds it; each 8-bit read of 0x511 (or 0x510) returns the
  item's next byte, 0 once past its end or when the item does not exist;
  8-bit writes to the data port are ignored (QEMU >= 2.4); accesses of
  other sizes, which QEMU's fw_cfg_comb_valid rejects, read 0 and are dropped.
  The selector's bit 15 chooses the architecture-local table and bit 14
  (write channel) is ignored, as QEMU masks them.  Items: 0x0000 signature
  "QEMU", 0x0001 ID = 1 (traditional interface only: no DMA, so port 0x514
  is not claimed), 0x0002 UUID (16 zero bytes), 0x0003 RAM size (u64 LE),
  0x0005 CPU count (u16 LE), 0x000F maximum CPUs (u16 LE), 0x0019 the file
  directory (u32 BE count, then per file u32 BE size, u16 BE key, u16
  reserved, 56-byte name), with the optional ``files`` numbered from 0x0020
  in name order as QEMU sorts them.  Not provided: the x86 arch-local items
  (0x8000+: ACPI, SMBIOS, E820, IRQ0 override, HPET), kernel/initrd/cmdline
  items (Multiboot loading is done by ``boot/``), boot menu, NUMA, the DMA
  interface and writable items.

``PcTestdev`` - QEMU ``pc-testdev`` (hw/misc/pc-testdev.c): port 0xE0-0xE3 a
  32-bit scratch register accessed at any width and byte offset (an access
  at 0xE0 + n of s bytes reads/writes bytes n .. n + s - 1; bytes past 0xE3
  read 0 and are dropped); 0xE8-0xEB the same register through byte-wide
  accesses (identical results); 0xE4 "flush page": a 32-bit write names a
  physical page, which QEMU mprotects to make KVM drop its mappings - here
  it only calls the optional ``on_flush_page(page_address)`` (tvmm has no
  host mappings to drop), other widths are dropped; 0x2000-0x2017 the IRQ
  line port: an 8-bit write of v to 0x2000 + n sets ISA IRQ line n to
  ``v != 0`` through ``irq_line(n)`` (a callable returning the IrqLine, or
  None for a line that does not exist; QEMU asserts n < 16); a wider write is
  split into byte writes at consecutive ports, as QEMU's memory core splits
  accesses wider than a region's valid.max_access_size (kvm-unit-tests'
  realmode sets IRQ 11 with ``outl`` to 0x200B, which also lowers 12-14); and the 64 KiB "iomem" scratch RAM at physical 0xFF000000
  (IOMEM_LEN is 0x10000 in QEMU, not 4 KiB), accesses of 1-4 bytes,
  little-endian, bytes past its end read 0.  QEMU gives the flush and IRQ
  ports no read handler; they read 0 here.

``PostCodePort`` - port 0x80, the POST diagnostic port (QEMU's ioport80 is a
  sink that reads all ones; so does this one): each write records
  ``(clock.now, low byte)`` in ``log`` and calls ``on_post(code)``.  Linux
  uses the port as an I/O delay, so ``log`` keeps the last ``log_limit``
  entries (None: all).

Invariants: every piece of guest-visible state (selector and offset, scratch
register, iomem, the IRQ levels pc-testdev drives, the POST log) is in the
snapshot; configuration (ports, RAM size, CPU counts, files) is not - a
snapshot is restored into a device built with the same arguments.
"""

from __future__ import annotations

import struct
from typing import Callable

from ..clock import Clock
from ..irq import IrqLine

_MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


# ---------------------------------------------------------------- isa-debug-exit
DEBUG_EXIT_BASE, DEBUG_EXIT_SIZE = 0xF4, 4
QEMU_DEFAULT_DEBUG_EXIT_BASE, QEMU_DEFAULT_DEBUG_EXIT_SIZE = 0x501, 2


def exit_status(value: int) -> int:
    """The status QEMU's isa-debug-exit exits with for a written value."""
    return (value << 1) | 1


class DebugExit:
    """isa-debug-exit: ``attach(bus)`` claims [iobase, iobase + iosize)."""

    name = "debug-exit"

    def __init__(self, on_exit: Callable[[int], None] | None = None, *,
                 iobase: int = DEBUG_EXIT_BASE, iosize: int = DEBUG_EXIT_SIZE,
                 name: str = "debug-exit"):
        self.on_exit = on_exit
        self.iobase, self.iosize = iobase, iosize
        self.name = name
        self.reset()

    def attach(self, bus) -> None:
        bus.add(self.iobase, self.iobase + self.iosize, self, self.name)

    def reset(self) -> None:
        self.exit_requests: list[int] = []          # statuses requested so far

    def snapshot(self) -> dict:
        return {"exit_requests": list(self.exit_requests)}

    def restore(self, state: dict) -> None:
        self.exit_requests = list(state["exit_requests"])

    def port_read(self, port: int, size: int) -> int:
        return 0

    def port_write(self, port: int, size: int, value: int) -> None:
        status = exit_status(value & _MASKS.get(size, 0xFFFFFFFF))
        self.exit_requests.append(status)
        if self.on_exit is not None:
            self.on_exit(status)


# ------------------------------------------------------------------------ fw_cfg
FW_CFG_PORT_SEL, FW_CFG_PORT_DATA = 0x510, 0x511
FW_CFG_SIGNATURE, FW_CFG_ID, FW_CFG_UUID, FW_CFG_RAM_SIZE = 0x0000, 0x0001, 0x0002, 0x0003
FW_CFG_NB_CPUS, FW_CFG_MAX_CPUS, FW_CFG_FILE_DIR = 0x0005, 0x000F, 0x0019
FW_CFG_FILE_FIRST = 0x0020
FW_CFG_WRITE_CHANNEL, FW_CFG_ARCH_LOCAL = 0x4000, 0x8000
FW_CFG_ENTRY_MASK = ~(FW_CFG_WRITE_CHANNEL | FW_CFG_ARCH_LOCAL) & 0xFFFF
FW_CFG_ID_TRADITIONAL = 1
FW_CFG_FILE_NAME_SIZE = 56


def file_directory(files: dict[str, bytes]) -> tuple[bytes, dict[int, bytes]]:
    """The FW_CFG_FILE_DIR blob and the items it names, keys from 0x0020 by name."""
    directory = bytearray(struct.pack(">I", len(files)))
    items = {}
    for key, name in enumerate(sorted(files), FW_CFG_FILE_FIRST):
        encoded = name.encode()
        if len(encoded) >= FW_CFG_FILE_NAME_SIZE:
            raise ValueError(f"fw_cfg file name too long: {name!r}")
        data = bytes(files[name])
        directory += struct.pack(">IHH", len(data), key, 0) + encoded.ljust(FW_CFG_FILE_NAME_SIZE, b"\0")
        items[key] = data
    return bytes(directory), items


class FwCfg:
    """fw_cfg, legacy I/O interface: ``attach(bus)`` claims 0x510-0x511."""

    name = "fw_cfg"

    def __init__(self, ram_size: int, nb_cpus: int = 1, max_cpus: int | None = None,
                 files: dict[str, bytes] | None = None, name: str = "fw_cfg"):
        self.name = name
        directory, file_items = file_directory(files or {})
        self.items: dict[int, bytes] = {
            FW_CFG_SIGNATURE: b"QEMU",
            FW_CFG_ID: struct.pack("<I", FW_CFG_ID_TRADITIONAL),
            FW_CFG_UUID: bytes(16),
            FW_CFG_RAM_SIZE: struct.pack("<Q", ram_size),
            FW_CFG_NB_CPUS: struct.pack("<H", nb_cpus),
            FW_CFG_MAX_CPUS: struct.pack("<H", nb_cpus if max_cpus is None else max_cpus),
            FW_CFG_FILE_DIR: directory,
            **file_items,
        }
        self.arch_items: dict[int, bytes] = {}
        self.reset()

    def attach(self, bus) -> None:
        bus.add(FW_CFG_PORT_SEL, FW_CFG_PORT_DATA + 1, self, self.name)

    def reset(self) -> None:
        self.select(FW_CFG_SIGNATURE)        # as QEMU's fw_cfg_reset

    def snapshot(self) -> dict:
        return {"selector": self.selector, "offset": self.offset}

    def restore(self, state: dict) -> None:
        self.selector, self.offset = state["selector"], state["offset"]

    def select(self, key: int) -> None:
        self.selector = key & 0xFFFF
        self.offset = 0

    def current_item(self) -> bytes | None:
        table = self.arch_items if self.selector & FW_CFG_ARCH_LOCAL else self.items
        return table.get(self.selector & FW_CFG_ENTRY_MASK)

    def read_byte(self) -> int:
        item = self.current_item()
        if item is None or self.offset >= len(item):
            return 0
        self.offset += 1
        return item[self.offset - 1]

    def port_read(self, port: int, size: int) -> int:
        return self.read_byte() if size == 1 else 0

    def port_write(self, port: int, size: int, value: int) -> None:
        if size == 2 and port == FW_CFG_PORT_SEL:
            self.select(value)
        # 8-bit writes to the data port are ignored; other accesses are invalid.


# -------------------------------------------------------------------- pc-testdev
TESTDEV_IOPORT, TESTDEV_FLUSH, TESTDEV_IOPORT_BYTE = 0xE0, 0xE4, 0xE8
TESTDEV_IRQ_BASE, TESTDEV_IRQ_LINES = 0x2000, 24
TESTDEV_IOMEM_BASE, TESTDEV_IOMEM_SIZE = 0xFF000000, 0x10000
PAGE_MASK = ~0xFFF & 0xFFFFFFFF


def _is_scratch_port(port: int) -> bool:
    """0xE0-0xE3 and its byte-access alias 0xE8-0xEB."""
    return TESTDEV_IOPORT <= port < TESTDEV_IOPORT + 4 or TESTDEV_IOPORT_BYTE <= port < TESTDEV_IOPORT_BYTE + 4


class PcTestdev:
    """pc-testdev: ``attach(bus, mem)`` claims 0xE0-0xEB, 0x2000-0x2017 and the iomem."""

    name = "pc-testdev"

    def __init__(self, irq_line: Callable[[int], IrqLine | None] | None = None, *,
                 on_flush_page: Callable[[int], None] | None = None, name: str = "pc-testdev"):
        self.irq_line = irq_line
        self.on_flush_page = on_flush_page
        self.name = name
        self.iomem = bytearray(TESTDEV_IOMEM_SIZE)
        self.reset()

    def attach(self, bus, mem) -> None:
        bus.add(TESTDEV_IOPORT, TESTDEV_IOPORT + 4, self, f"{self.name}-ioport")
        bus.add(TESTDEV_FLUSH, TESTDEV_FLUSH + 4, self, f"{self.name}-flush-page")
        bus.add(TESTDEV_IOPORT_BYTE, TESTDEV_IOPORT_BYTE + 4, self, f"{self.name}-ioport-byte")
        bus.add(TESTDEV_IRQ_BASE, TESTDEV_IRQ_BASE + TESTDEV_IRQ_LINES, self, f"{self.name}-irq-line")
        mem.add_mmio(TESTDEV_IOMEM_BASE, TESTDEV_IOMEM_BASE + TESTDEV_IOMEM_SIZE, self,
                     f"{self.name}-iomem")

    def reset(self) -> None:
        self.ioport_data = 0
        self.iomem[:] = bytes(TESTDEV_IOMEM_SIZE)
        self.irq_levels = [False] * TESTDEV_IRQ_LINES
        self.flushed_pages: list[int] = []

    def snapshot(self) -> dict:
        return {"ioport_data": self.ioport_data, "iomem": bytes(self.iomem),
                "irq_levels": list(self.irq_levels), "flushed_pages": list(self.flushed_pages)}

    def restore(self, state: dict) -> None:
        self.ioport_data = state["ioport_data"]
        self.iomem[:] = state["iomem"]
        self.flushed_pages = list(state["flushed_pages"])
        for n, level in enumerate(state["irq_levels"]):
            self._drive_irq(n, level)

    # -- ports -----------------------------------------------------------------
    def port_read(self, port: int, size: int) -> int:
        if _is_scratch_port(port):
            return self._scratch_read(port & 3, size)
        return 0                                 # flush page and IRQ ports have no read

    def port_write(self, port: int, size: int, value: int) -> None:
        if _is_scratch_port(port):
            self._scratch_write(port & 3, size, value)
        elif port == TESTDEV_FLUSH and size == 4:
            self.flushed_pages.append(value & PAGE_MASK)
            if self.on_flush_page is not None:
                self.on_flush_page(value & PAGE_MASK)
        elif TESTDEV_IRQ_BASE <= port < TESTDEV_IRQ_BASE + TESTDEV_IRQ_LINES:
            # QEMU's valid.max_access_size is 1 here, so its memory core splits a
            # wider write into byte writes at consecutive ports (memory_access_size).
            for i in range(size):
                n = port - TESTDEV_IRQ_BASE + i
                if n < TESTDEV_IRQ_LINES:
                    self._drive_irq(n, (value >> (8 * i)) & 0xFF != 0)

    def _scratch_read(self, byte: int, size: int) -> int:
        return (self.ioport_data >> (8 * byte)) & _MASKS[size]

    def _scratch_write(self, byte: int, size: int, value: int) -> None:
        shift = 8 * byte
        mask = (_MASKS[size] << shift) & 0xFFFFFFFF
        self.ioport_data = (self.ioport_data & ~mask) | ((value << shift) & mask)

    def _drive_irq(self, n: int, level: bool) -> None:
        self.irq_levels[n] = bool(level)
        line = self.irq_line(n) if self.irq_line is not None else None
        if line is not None:
            line.set(level)

    # -- iomem -----------------------------------------------------------------
    def mmio_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.iomem[offset:offset + size].ljust(size, b"\0"), "little")

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        data = (value & _MASKS.get(size, (1 << (8 * size)) - 1)).to_bytes(size, "little")
        end = min(offset + size, TESTDEV_IOMEM_SIZE)
        self.iomem[offset:end] = data[:end - offset]


# ----------------------------------------------------------------- POST code port
POST_PORT = 0x80
DEFAULT_POST_LOG_LIMIT = 4096


class PostCodePort:
    """Port 0x80: ``attach(bus)`` claims it; ``log`` lists ``(time, code)`` pairs."""

    name = "post"

    def __init__(self, clock: Clock, on_post: Callable[[int], None] | None = None, *,
                 log_limit: int | None = DEFAULT_POST_LOG_LIMIT, name: str = "post"):
        self.clock = clock
        self.on_post = on_post
        self.log_limit = log_limit
        self.name = name
        self.reset()

    def attach(self, bus) -> None:
        bus.add(POST_PORT, POST_PORT + 1, self, self.name)

    def reset(self) -> None:
        self.log: list[tuple[int, int]] = []

    def snapshot(self) -> dict:
        return {"log": [list(entry) for entry in self.log]}

    def restore(self, state: dict) -> None:
        self.log = [(int(t), int(code)) for t, code in state["log"]]

    @property
    def codes(self) -> list[int]:
        return [code for _, code in self.log]

    def port_read(self, port: int, size: int) -> int:
        return _MASKS.get(size, 0xFFFFFFFF)

    def port_write(self, port: int, size: int, value: int) -> None:
        code = value & 0xFF
        self.log.append((self.clock.now, code))
        if self.log_limit is not None and len(self.log) > self.log_limit:
            del self.log[:len(self.log) - self.log_limit]
        if self.on_post is not None:
            self.on_post(code)
