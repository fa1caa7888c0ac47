"""ATA/IDE channel (PIO only) with master and slave hard disks backed by image files.

Modelled (T13 ATA-2 / ATA-4, "AT Attachment with Packet Interface"): the
command block registers at ``base`` (0x1F0-0x1F7 on the primary channel), the
control block register at ``ctrl`` (0x3F6: alternate status on read, device
control on write), INTRQ on an ``IrqLine`` (IRQ14), and two devices:

- Commands: IDENTIFY DEVICE (ECh), READ SECTORS (20h/21h), WRITE SECTORS
  (30h/31h), READ MULTIPLE (C4h), WRITE MULTIPLE (C5h), SET MULTIPLE MODE
  (C6h; 0 disables, otherwise a power of two up to 16), INITIALIZE DEVICE
  PARAMETERS (91h), READ VERIFY SECTORS (40h/41h), FLUSH CACHE (E7h),
  RECALIBRATE (1xh), SEEK (7xh), SET FEATURES (EFh: every subcommand accepted
  and ignored), EXECUTE DEVICE DIAGNOSTIC (90h, run by both devices whichever
  is selected).  IDENTIFY PACKET DEVICE (A1h) and every other opcode abort
  (ERR, error register ABRT).
- Addressing: LBA28 when device/head bit 6 is set, otherwise CHS through the
  current translation (INITIALIZE DEVICE PARAMETERS changes it); sector count
  0 means 256.  A transfer that would leave the disk, or a CHS address outside
  the translation, fails with IDNF before any data moves.  While a transfer
  runs and after it, the address registers hold the next sector to transfer
  and the sector count the sectors left (0 at the end), as QEMU does; on an
  error they hold the starting address.
- PIO protocols (ATA-4 section 9): data-in (READ, IDENTIFY) raises INTRQ at
  the start of every DRQ block and not after the last; data-out (WRITE)
  asserts DRQ for the first block at once, without INTRQ (xv6 writes the data
  right after the command without polling), then raises INTRQ after every
  block including the last; non-data commands raise INTRQ at completion.  A
  block is one sector, or the multiple count for READ/WRITE MULTIPLE.
- Status BSY/DRDY/DSC/DRQ/ERR (DF and CORR are never set) and the error
  register; reading the status register clears the selected device's
  pending interrupt, reading alternate status does not, writing the command
  register clears it too.  INTRQ reaches the line only from the selected
  device and only while nIEN is clear.
- Device control: nIEN; SRST puts both devices in reset (BSY) while set and,
  once cleared, they present the ATA signature (sector count 1, LBA low 1,
  LBA mid/high 0, device 0 selected, error 01h, status 50h) without an
  interrupt.  Multiple mode and CHS translation survive a software reset
  (settings revert only on power-on, i.e. ``reset()``).
- The data port moves 2 bytes per 16-bit access and 4 per 32-bit access
  (``rep insl``/``outsl``).  An 8-bit access is a 16-bit bus cycle of which
  the host sees the low byte (as on an ISA bus), so it also moves 2 bytes.
  Accesses wider than a byte to the other registers act as byte accesses on
  consecutive ports.  Writes to the command block registers (other than the
  command register) are latched by both devices, as on a real cable.

Timing (deterministic): a command, or the next block of a multi-block
transfer, completes ``delay`` instructions of virtual time after it starts
(default 2000, i.e. 20 us at 100 MIPS), through a clock timer; BSY is visible
meanwhile.  With ``delay=0`` everything completes inside the port access that
started it.  Software reset takes the same delay after SRST is cleared.

Absent devices: when the selected device is absent but the other one is
present, the other registers read the present device's copies and commands
to it are ignored.  Status and alternate status read 00h for a missing
device 1 (ATA-4 9.16.1: device 0 answers for it that way; xv6 probes disk 1
by selecting it and polling status for a non-zero value) and 50h (DRDY DSC)
for a missing device 0, as QEMU's PC does (kernels tested on QEMU wait for
DRDY on device 0 even when only device 1 exists; xv6 booted with just its
file system disk does).  A channel with no
devices at all reads FFh on every port (a floating bus, what the PC reads when
nothing is connected; Linux's ATA code takes status FFh to mean "no device").

Not modelled: DMA, LBA48, ATAPI/packet devices, power management and SMART
commands, security, overlapped/queued commands, the drive address register
(0x3F7, which belongs to the floppy controller), media errors (except that
a host I/O error on the image file ends the command with ERR: UNC on a read,
ABRT on a write; the guest sees a bad sector, nothing else), write caching
(FLUSH CACHE has nothing to flush), spin-up time after power-on.

Invariants: each present drive is in exactly one phase -- idle (DRDY), busy
with one pending clock event (``pending`` names it, ``timer`` holds it),
data-in or data-out with DRQ set and ``buffer``/``pos`` the current block.
The IRQ line level always equals ``selected drive's intrq and not nIEN``.
"""

from __future__ import annotations

import errno
import os
import weakref

from ..bus import read_bytewise, write_bytewise
from ..clock import Clock
from ..irq import IrqLine

SECTOR = 512
MAX_LBA28 = 0x0FFF_FFFF
MAX_MULTIPLE = 16
DEFAULT_DELAY = 2000

# Status register.
BSY, DRDY, DF, DSC, DRQ, CORR, ERR = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x01
READY = DRDY | DSC
# Error register.
UNC, IDNF, ABRT = 0x40, 0x10, 0x04
DIAG_PASSED = 0x01
# Device/head register.
DEV_LBA, DEV_SELECT, DEV_OBSOLETE = 0x40, 0x10, 0xA0
# Device control register.
NIEN, SRST = 0x02, 0x04

# Command block register offsets.
REG_DATA, REG_ERROR, REG_COUNT, REG_LBA_LOW, REG_LBA_MID, REG_LBA_HIGH, REG_DEVICE, REG_STATUS = range(8)
TASKFILE_NAMES = {REG_ERROR: "features", REG_COUNT: "count", REG_LBA_LOW: "lba_low",
                  REG_LBA_MID: "lba_mid", REG_LBA_HIGH: "lba_high", REG_DEVICE: "device"}

CMD_EXECUTE_DIAGNOSTIC = 0x90
CMD_IDENTIFY = 0xEC

MODEL = "TVMM ATA DISK"
FIRMWARE = "1.0"


# ---------------------------------------------------------------------------------------
# Disk images
# ---------------------------------------------------------------------------------------

class DiskImageError(ValueError):
    """A disk image the user named that cannot be used (one line says why)."""


class Disk:
    """A disk image: a file (or bytes) of whole 512-byte sectors.

    Writes go to a copy-on-write overlay (sector number -> 512 bytes) and the
    image never changes, unless the disk was opened with ``writable=True``;
    then they go straight to the file.  Reads see the overlay over the image.
    The overlay is part of ``snapshot()``; a writable file's contents are not
    (the file is external state).

    The image must be a regular file (not a directory, FIFO or device); it
    is opened once, when the disk is made, and stays open, so an image
    deleted or renamed while its guest runs still reads as it did (a disk
    made again from the path of a deleted image that another live ``Disk``
    still holds, as a guest's reset does, shares that open image).  A host
    I/O error later (``OSError`` from ``read``/``write``) is the drive's
    media error: the channel ends the command with ERR.
    """

    def __init__(self, path, writable: bool = False):
        from ..boot.errors import open_user_file
        self.path = os.fspath(path)
        fd = None
        try:
            os.stat(self.path)
        except FileNotFoundError:
            live = _open_images.get((os.path.abspath(self.path), writable))
            if live is None or live._fd is None:
                raise FileNotFoundError(errno.ENOENT, "disk image not found", self.path) from None
            fd = os.dup(live._fd)                   # deleted while a guest has it open: that image
        except (OSError, ValueError):
            pass                                    # open_user_file says what is wrong
        if fd is None:
            fd = open_user_file(self.path, "disk image", writable=writable, error=DiskImageError)
        self._fd = fd
        self._closer = weakref.finalize(self, os.close, fd)
        _check_size(os.fstat(fd).st_size, self.path)
        self.writable = writable
        self.sectors = os.fstat(fd).st_size // SECTOR
        self._data: bytes | None = None
        self.overlay: dict[int, bytes] = {}
        _open_images[(os.path.abspath(self.path), writable)] = self

    @classmethod
    def from_bytes(cls, data: bytes) -> "Disk":
        """An in-memory image (copy-on-write; the bytes are never modified)."""
        _check_size(len(data), "in-memory image")
        disk = cls.__new__(cls)
        disk.path, disk.writable, disk.sectors = None, False, len(data) // SECTOR
        disk._data, disk.overlay, disk._fd = bytes(data), {}, None
        return disk

    def close(self) -> None:
        """Close the image file (the disk cannot read it afterwards)."""
        closer = getattr(self, "_closer", None)
        if closer is not None:
            closer()

    def __repr__(self) -> str:
        where = self.path if self.path is not None else "<bytes>"
        return f"Disk({where!r}, {self.sectors} sectors{', writable' if self.writable else ''})"

    def read(self, lba: int, count: int) -> bytes:
        self._check_range(lba, count)
        data = self._read_image(lba, count)
        if not self.overlay:
            return data
        out = bytearray(data)
        for i in range(count):
            sector = self.overlay.get(lba + i)
            if sector is not None:
                out[i * SECTOR:(i + 1) * SECTOR] = sector
        return bytes(out)

    def write(self, lba: int, data: bytes) -> None:
        if len(data) % SECTOR:
            raise ValueError("disk writes must be whole sectors")
        count = len(data) // SECTOR
        self._check_range(lba, count)
        if self.writable:
            data, pos = bytes(data), lba * SECTOR
            while data:
                n = os.pwrite(self._fd, data, pos)
                data, pos = data[n:], pos + n
            return
        for i in range(count):
            self.overlay[lba + i] = bytes(data[i * SECTOR:(i + 1) * SECTOR])

    def flush(self) -> None:
        """Nothing is buffered: writable writes reach the file when made."""

    def snapshot(self) -> dict:
        return {"sectors": self.sectors,
                "overlay": [[lba, self.overlay[lba]] for lba in sorted(self.overlay)]}

    def restore(self, state: dict) -> None:
        if state["sectors"] != self.sectors:
            raise ValueError(f"snapshot is of a {state['sectors']}-sector disk, not {self.sectors}")
        self.overlay = {int(lba): bytes(data) for lba, data in state["overlay"]}

    def _check_range(self, lba: int, count: int) -> None:
        if lba < 0 or count < 0 or lba + count > self.sectors:
            raise ValueError(f"sectors {lba}..{lba + count - 1} outside a {self.sectors}-sector disk")

    def _read_image(self, lba: int, count: int) -> bytes:
        if self._data is not None:
            return self._data[lba * SECTOR:(lba + count) * SECTOR]
        want, pos, parts = count * SECTOR, lba * SECTOR, []
        while want:
            chunk = os.pread(self._fd, want, pos)
            if not chunk:
                break                               # the file shrank under us: zeros
            parts.append(chunk)
            want, pos = want - len(chunk), pos + len(chunk)
        return b"".join(parts).ljust(count * SECTOR, b"\0")


# Disks made from a path and still alive, so that a guest rebuilt (reset) after
# its image was deleted gets the same image back rather than an error.
_open_images: "weakref.WeakValueDictionary[tuple[str, bool], Disk]" = weakref.WeakValueDictionary()


def _check_size(size: int, where: str) -> None:
    if size == 0 or size % SECTOR:
        raise DiskImageError(f"disk image {where!r} is {size} bytes: the size must be a "
                             f"non-zero multiple of {SECTOR} bytes (whole sectors)")


def default_geometry(sectors: int) -> tuple[int, int, int]:
    """(cylinders, heads, sectors per track) as ATA-4 recommends: 16 heads, 63
    sectors, at most 16383 cylinders; smaller disks get a translation that
    never addresses past their end."""
    if sectors >= 16 * 63:
        return min(sectors // (16 * 63), 16383), 16, 63
    spt = min(63, sectors)
    heads = min(16, sectors // spt)
    return sectors // (heads * spt), heads, spt


# ---------------------------------------------------------------------------------------
# One device on the channel
# ---------------------------------------------------------------------------------------

class _Drive:
    """The per-device state: task file copies, status, translation, transfer."""

    def __init__(self, disk: Disk, unit: int):
        self.disk, self.unit = disk, unit
        self.timer = None
        self.power_on()

    def power_on(self) -> None:
        self.cylinders, self.heads, self.spt = default_geometry(self.disk.sectors)
        self.multiple = 0
        self.features = 0
        self.signature()
        self.status, self.error, self.intrq = READY, DIAG_PASSED, False
        self.end_transfer()
        self.pending = None

    def signature(self) -> None:
        """The ATA device signature (ATA-4 9.12) left by reset and diagnostics."""
        self.count, self.lba_low, self.lba_mid, self.lba_high, self.device = 1, 1, 0, 0, 0

    def end_transfer(self) -> None:
        self.command = 0
        self.next_lba = self.left = self.block = 0
        self.direction = None          # "in" (device to host), "out" or None
        self.buffer = bytearray()
        self.pos = 0

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.pending = None

    # -- addressing ----------------------------------------------------------------------
    def sector_count(self) -> int:
        return self.count or 256

    def address(self) -> int | None:
        """The LBA the task file names, or None for an invalid CHS address."""
        if self.device & DEV_LBA:
            return ((self.device & 0x0F) << 24) | (self.lba_high << 16) | (self.lba_mid << 8) | self.lba_low
        cylinder, head, sector = (self.lba_high << 8) | self.lba_mid, self.device & 0x0F, self.lba_low
        if not (1 <= sector <= self.spt and head < self.heads and cylinder < self.cylinders):
            return None
        return (cylinder * self.heads + head) * self.spt + sector - 1

    def set_address(self, lba: int) -> None:
        if self.device & DEV_LBA:
            self.lba_low, self.lba_mid, self.lba_high = lba & 0xFF, (lba >> 8) & 0xFF, (lba >> 16) & 0xFF
            self.device = (self.device & 0xF0) | ((lba >> 24) & 0x0F)
            return
        cylinder, rest = divmod(lba, self.heads * self.spt)
        head, sector = divmod(rest, self.spt)
        self.lba_low, self.lba_mid, self.lba_high = sector + 1, cylinder & 0xFF, (cylinder >> 8) & 0xFF
        self.device = (self.device & 0xF0) | (head & 0x0F)

    # -- IDENTIFY DEVICE ---------------------------------------------------------------------
    def identify(self) -> bytes:
        """The 256-word IDENTIFY DEVICE block (ATA-4 8.12, table 11)."""
        words = [0] * 256
        cylinders, heads, spt = default_geometry(self.disk.sectors)
        lba_sectors = min(self.disk.sectors, MAX_LBA28)
        current_capacity = self.cylinders * self.heads * self.spt
        fields = {
            0: 0x0040,                              # fixed (non-removable) ATA device
            1: cylinders, 3: heads, 6: spt,         # default translation
            47: 0x8000 | MAX_MULTIPLE,              # READ/WRITE MULTIPLE up to 16 sectors
            49: 0x0200,                             # LBA supported (no DMA)
            50: 0x4000,
            51: 0x0200,                             # PIO mode 2 timing
            53: 0x0003,                             # words 54-58 and 64-70 valid
            54: self.cylinders, 55: self.heads, 56: self.spt,
            57: current_capacity & 0xFFFF, 58: current_capacity >> 16,
            59: (0x0100 | self.multiple) if self.multiple else 0,
            60: lba_sectors & 0xFFFF, 61: lba_sectors >> 16,
            64: 0x0003,                             # PIO modes 3 and 4
            65: 120, 66: 120, 67: 120, 68: 120,     # minimum cycle times (ns)
            80: 0x001E,                             # ATA-1 to ATA-4
            82: 0, 83: 0x5000, 84: 0x4000,          # 83 bit 12: FLUSH CACHE (as ATA-6 numbers it)
            85: 0, 86: 0x1000, 87: 0x4000,
        }
        for index, value in fields.items():
            words[index] = value
        _put_string(words, 10, 20, f"TVMM{self.unit:04d}{self.disk.sectors:08X}")
        _put_string(words, 23, 8, FIRMWARE)
        _put_string(words, 27, 40, MODEL)
        block = bytearray(b"".join(w.to_bytes(2, "little") for w in words))
        block[510] = 0xA5                           # integrity word: signature and checksum
        block[511] = -sum(block[:511]) & 0xFF
        return bytes(block)

    # -- snapshot ------------------------------------------------------------------------------
    FIELDS = ("cylinders", "heads", "spt", "multiple", "features", "count", "lba_low", "lba_mid",
              "lba_high", "device", "status", "error", "intrq", "command", "next_lba", "left",
              "block", "direction", "pos", "pending")

    def snapshot(self) -> dict:
        state = {name: getattr(self, name) for name in self.FIELDS}
        state["buffer"] = bytes(self.buffer)
        state["deadline"] = self.timer.deadline if self.timer is not None else None
        state["disk"] = self.disk.snapshot()
        return state

    def restore(self, state: dict) -> None:
        for name in self.FIELDS:
            setattr(self, name, state[name])
        self.buffer = bytearray(state["buffer"])
        self.disk.restore(state["disk"])


def _put_string(words: list[int], first: int, length: int, text: str) -> None:
    """ATA strings: space padded, the first character of each pair in bits 15-8."""
    raw = text.encode("ascii").ljust(length, b" ")[:length]
    for i in range(0, length, 2):
        words[first + i // 2] = (raw[i] << 8) | raw[i + 1]


# ---------------------------------------------------------------------------------------
# The channel
# ---------------------------------------------------------------------------------------

def _command_table() -> dict[int, str]:
    table = {
        0x20: "read_sectors", 0x21: "read_sectors",
        0x30: "write_sectors", 0x31: "write_sectors",
        0x40: "read_verify", 0x41: "read_verify",
        0x91: "initialize_device_parameters",
        0xC4: "read_multiple", 0xC5: "write_multiple", 0xC6: "set_multiple_mode",
        0xE7: "flush_cache", 0xEC: "identify", 0xEF: "set_features",
    }
    for op in range(0x10, 0x20):
        table[op] = "no_data"              # RECALIBRATE
    for op in range(0x70, 0x80):
        table[op] = "no_data"              # SEEK
    return table


COMMANDS = _command_table()          # IDENTIFY PACKET (A1h) and anything unlisted abort


class IdeChannel:
    """An ATA channel: ``IdeChannel(clock, irq, master=Disk(...), slave=None)``.

    ``attach(bus)`` claims ``[base, base+8)`` and ``ctrl``; the primary
    channel is the default (0x1F0, 0x3F6, IRQ14); pass base=0x170, ctrl=0x376
    and IRQ15's line for a secondary one.
    """

    name = "ide"

    def __init__(self, clock: Clock, irq: IrqLine, master: Disk | None = None,
                 slave: Disk | None = None, delay: int = DEFAULT_DELAY,
                 base: int = 0x1F0, ctrl: int = 0x3F6):
        if delay < 0:
            raise ValueError("command delay cannot be negative")
        self.clock, self.irq, self.delay = clock, irq, delay
        self.base, self.ctrl = base, ctrl
        self.drives = [_Drive(disk, unit) if disk is not None else None
                       for unit, disk in enumerate((master, slave))]
        self.control = 0
        self.selected = 0
        # Registers with side effects; the others are plain task-file latches.
        self._readers = {REG_ERROR: self._read_error, REG_STATUS: self._read_status}
        self._writers = {REG_DEVICE: self._write_device, REG_STATUS: self._write_command}
        self._actions = {"load_block": self._load_block, "data_ready": self._data_ready,
                         "block_written": self._block_written, "finish": self._finish,
                         "fail": self._fail, "reset_done": self._reset_done}

    def attach(self, bus) -> None:
        bus.add(self.base, self.base + 8, self, "ide")
        bus.add(self.ctrl, self.ctrl + 1, self, "ide-ctrl")

    @property
    def present(self) -> list[_Drive]:
        return [d for d in self.drives if d is not None]

    def _drive(self) -> _Drive | None:
        return self.drives[self.selected]

    def _responder(self) -> _Drive | None:
        """The device that answers register reads: the selected one, or device 0 for a missing 1."""
        drive = self._drive()
        return drive if drive is not None else self.drives[1 - self.selected]

    # -- Device protocol ------------------------------------------------------------------
    def reset(self) -> None:
        for drive in self.present:
            drive.cancel()
            drive.power_on()
        self.control = 0
        self.selected = 0
        self._update_irq()

    def snapshot(self) -> dict:
        return {"control": self.control, "selected": self.selected, "delay": self.delay,
                "drives": [d.snapshot() if d is not None else None for d in self.drives]}

    def restore(self, state: dict) -> None:
        if [s is None for s in state["drives"]] != [d is None for d in self.drives]:
            raise ValueError("snapshot has a different set of drives")
        self.control, self.selected, self.delay = state["control"], state["selected"], state["delay"]
        for drive, saved in zip(self.drives, state["drives"]):
            if drive is None:
                continue
            drive.cancel()
            drive.restore(saved)
            if saved["deadline"] is not None:
                drive.timer = self.clock.at(saved["deadline"], self._timer_fn(drive), "ide")
        self._update_irq()

    # -- port dispatch ----------------------------------------------------------------------
    def port_read(self, port: int, size: int) -> int:
        if port == self.base + REG_DATA:
            return self._read_data(size)
        return read_bytewise(self._read_byte, port, size)

    def port_write(self, port: int, size: int, value: int) -> None:
        if port == self.base + REG_DATA:
            self._write_data(size, value)
            return
        write_bytewise(self._write_byte, port, size, value)

    def _read_byte(self, port: int) -> int:
        if not self.present:
            return 0xFF
        if port == self.ctrl:
            drive = self._drive()
            return drive.status if drive is not None else self._absent_status()
        reg = port - self.base
        if reg in self._readers:
            return self._readers[reg](1) & 0xFF
        if reg in TASKFILE_NAMES:
            value = getattr(self._responder(), TASKFILE_NAMES[reg])
            return value | DEV_OBSOLETE if reg == REG_DEVICE else value
        return 0xFF

    def _write_byte(self, port: int, value: int) -> None:
        if port == self.ctrl:
            self._write_control(value)
            return
        reg = port - self.base
        if reg in self._writers:
            self._writers[reg](1, value)
        elif reg in TASKFILE_NAMES:
            for drive in self.present:
                setattr(drive, TASKFILE_NAMES[reg], value)

    # -- registers ------------------------------------------------------------------------------
    def _absent_status(self) -> int:
        return 0 if self.selected else DRDY | DSC

    def _read_status(self, size: int) -> int:
        drive = self._drive()
        if drive is None:
            return self._absent_status()
        if drive.intrq:
            drive.intrq = False
            self._update_irq()
        return drive.status

    def _read_error(self, size: int) -> int:
        return self._responder().error

    def _write_device(self, size: int, value: int) -> None:
        for drive in self.present:
            drive.device = value & ~DEV_OBSOLETE & 0xFF
        self.selected = 1 if value & DEV_SELECT else 0
        self._update_irq()

    def _write_control(self, value: int) -> None:
        old, self.control = self.control, value & (NIEN | SRST)
        if value & SRST and not old & SRST:
            for drive in self.present:
                drive.cancel()
                drive.end_transfer()
                drive.status, drive.intrq = BSY, False
        elif old & SRST and not value & SRST:
            for drive in self.present:
                self._schedule(drive, "reset_done")
        self._update_irq()

    def _update_irq(self) -> None:
        drive = self._drive()
        self.irq.set(drive is not None and drive.intrq and not self.control & NIEN)

    # -- the data port ------------------------------------------------------------------------
    def _read_data(self, size: int) -> int:
        drive = self._drive()
        if drive is None or drive.direction != "in":
            return (1 << (8 * size)) - 1
        width = 2 if size == 1 else size
        chunk = drive.buffer[drive.pos:drive.pos + width]
        drive.pos += width
        value = int.from_bytes(chunk.ljust(width, b"\xff"), "little")
        if drive.pos >= len(drive.buffer):
            self._data_in_block_done(drive)
        return value & ((1 << (8 * size)) - 1)

    def _write_data(self, size: int, value: int) -> None:
        drive = self._drive()
        if drive is None or drive.direction != "out":
            return
        width = 2 if size == 1 else size
        take = min(width, len(drive.buffer) - drive.pos)
        drive.buffer[drive.pos:drive.pos + take] = value.to_bytes(width, "little")[:take]
        drive.pos += take
        if drive.pos >= len(drive.buffer):
            self._data_out_block_done(drive)

    def _data_in_block_done(self, drive: _Drive) -> None:
        drive.buffer, drive.pos = bytearray(), 0
        if drive.left:
            drive.status = BSY
            self._schedule(drive, "load_block")
        else:
            drive.end_transfer()
            drive.status = READY

    def _data_out_block_done(self, drive: _Drive) -> None:
        try:
            drive.disk.write(drive.next_lba, bytes(drive.buffer))
        except OSError:
            self._media_error(drive, ABRT)           # the host could not write the image file
            return
        sectors = len(drive.buffer) // SECTOR
        drive.next_lba += sectors
        drive.left -= sectors
        drive.set_address(drive.next_lba)
        drive.count = drive.left & 0xFF
        drive.buffer, drive.pos = bytearray(), 0
        drive.status = BSY
        self._schedule(drive, "block_written")

    def _open_out_block(self, drive: _Drive) -> None:
        drive.buffer = bytearray(min(drive.block, drive.left) * SECTOR)
        drive.pos = 0
        drive.status = READY | DRQ

    # -- commands -------------------------------------------------------------------------------
    def _write_command(self, size: int, value: int) -> None:
        if self.control & SRST:
            return
        if value == CMD_EXECUTE_DIAGNOSTIC:
            targets = self.present
        else:
            drive = self._drive()
            targets = [drive] if drive is not None else []
        for drive in targets:
            if drive.status & BSY:
                continue                    # the host must not write a command while BSY
            drive.cancel()
            drive.end_transfer()
            drive.intrq = False
            drive.error = 0
            drive.command = value
            handler = COMMANDS.get(value)
            if value == CMD_EXECUTE_DIAGNOSTIC:
                self._cmd_execute_diagnostic(drive)
            elif handler is None:
                self._reject(drive, ABRT)
            else:
                getattr(self, "_cmd_" + handler)(drive)
        self._update_irq()

    def _reject(self, drive: _Drive, error: int) -> None:
        drive.error = error
        drive.status = BSY
        self._schedule(drive, "fail")

    def _complete(self, drive: _Drive) -> None:
        drive.status = BSY
        self._schedule(drive, "finish")

    def _transfer_range(self, drive: _Drive) -> int | None:
        lba, count = drive.address(), drive.sector_count()
        if lba is None or lba + count > drive.disk.sectors:
            return None
        return lba

    def _start_transfer(self, drive: _Drive, block: int, direction: str) -> None:
        lba = self._transfer_range(drive)
        if lba is None:
            self._reject(drive, IDNF)
            return
        drive.next_lba, drive.left, drive.block = lba, drive.sector_count(), block
        drive.direction = direction
        if direction == "in":
            drive.status = BSY
            self._schedule(drive, "load_block")
        else:
            self._open_out_block(drive)

    def _cmd_read_sectors(self, drive: _Drive) -> None:
        self._start_transfer(drive, 1, "in")

    def _cmd_write_sectors(self, drive: _Drive) -> None:
        self._start_transfer(drive, 1, "out")

    def _cmd_read_multiple(self, drive: _Drive) -> None:
        if not drive.multiple:
            self._reject(drive, ABRT)
        else:
            self._start_transfer(drive, drive.multiple, "in")

    def _cmd_write_multiple(self, drive: _Drive) -> None:
        if not drive.multiple:
            self._reject(drive, ABRT)
        else:
            self._start_transfer(drive, drive.multiple, "out")

    def _cmd_read_verify(self, drive: _Drive) -> None:
        lba = self._transfer_range(drive)
        if lba is None:
            self._reject(drive, IDNF)
            return
        drive.set_address(lba + drive.sector_count())
        drive.count = 0
        self._complete(drive)

    def _cmd_set_multiple_mode(self, drive: _Drive) -> None:
        count = drive.count
        if count > MAX_MULTIPLE or count & (count - 1):
            self._reject(drive, ABRT)
            return
        drive.multiple = count                # 0 disables multiple mode (ATA-2)
        self._complete(drive)

    def _cmd_initialize_device_parameters(self, drive: _Drive) -> None:
        heads, spt = (drive.device & 0x0F) + 1, drive.count
        cylinders = min(drive.disk.sectors // (heads * spt), 65535) if spt else 0
        if not cylinders:
            self._reject(drive, ABRT)
            return
        drive.cylinders, drive.heads, drive.spt = cylinders, heads, spt
        self._complete(drive)

    def _cmd_identify(self, drive: _Drive) -> None:
        drive.buffer, drive.pos = bytearray(drive.identify()), 0
        drive.direction = "in"
        drive.status = BSY
        self._schedule(drive, "data_ready")

    def _cmd_flush_cache(self, drive: _Drive) -> None:
        drive.disk.flush()
        self._complete(drive)

    def _cmd_set_features(self, drive: _Drive) -> None:
        self._complete(drive)

    def _cmd_no_data(self, drive: _Drive) -> None:
        self._complete(drive)

    def _cmd_execute_diagnostic(self, drive: _Drive) -> None:
        drive.signature()
        drive.error = DIAG_PASSED
        self.selected = 0
        self._complete(drive)

    # -- timed completions ------------------------------------------------------------------------
    def _schedule(self, drive: _Drive, action: str) -> None:
        drive.cancel()
        if self.delay == 0:
            self._actions[action](drive)
            return
        drive.pending = action
        drive.timer = self.clock.after(self.delay, self._timer_fn(drive), "ide")

    def _timer_fn(self, drive: _Drive):
        def fire(now: int) -> None:
            action, drive.pending, drive.timer = drive.pending, None, None
            if action is not None:
                self._actions[action](drive)
                self._update_irq()
        return fire

    def _interrupt(self, drive: _Drive) -> None:
        drive.intrq = True
        self._update_irq()

    def _load_block(self, drive: _Drive) -> None:
        sectors = min(drive.block, drive.left)
        try:
            data = drive.disk.read(drive.next_lba, sectors)
        except OSError:
            self._media_error(drive, UNC)            # the host could not read the image file
            return
        drive.buffer, drive.pos = bytearray(data), 0
        drive.next_lba += sectors
        drive.left -= sectors
        drive.set_address(drive.next_lba)
        drive.count = drive.left & 0xFF
        self._data_ready(drive)

    def _data_ready(self, drive: _Drive) -> None:
        drive.status = READY | DRQ
        self._interrupt(drive)

    def _block_written(self, drive: _Drive) -> None:
        if drive.left:
            self._open_out_block(drive)
        else:
            drive.end_transfer()
            drive.status = READY
        self._interrupt(drive)

    def _finish(self, drive: _Drive) -> None:
        drive.status = READY
        self._interrupt(drive)

    def _fail(self, drive: _Drive) -> None:
        drive.end_transfer()
        drive.status = READY | ERR
        self._interrupt(drive)

    def _media_error(self, drive: _Drive, error: int) -> None:
        """A host I/O error on the image: the command ends at once with ERR
        (UNC for a read, ABRT for a write) and the address registers at the
        sector that failed, as a drive reports a bad sector."""
        drive.set_address(drive.next_lba)
        drive.error = error
        self._fail(drive)

    def _reset_done(self, drive: _Drive) -> None:
        drive.signature()
        drive.status, drive.error = READY, DIAG_PASSED
        self.selected = 0
