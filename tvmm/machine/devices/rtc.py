"""Motorola MC146818 real-time clock and CMOS RAM (the PC AT's RTC at ports 0x70/0x71).

Modelled (Motorola MC146818 datasheet; IBM PC AT technical reference for the
port pair and the CMOS layout; QEMU's ``hw/rtc/mc146818rtc.c`` where the PC
convention goes beyond the chip):

- Port 0x70 (write): bits 0-6 select one of 128 CMOS bytes, bit 7 is the
  chipset's NMI mask, kept and exposed as ``nmi_masked`` (reading 0x70
  returns 0xFF, as in QEMU).  Port 0x71 reads/writes the selected byte.
- The clock: registers 0x00 (seconds), 0x02 (minutes), 0x04 (hours), 0x06
  (day of week, 1 = Sunday), 0x07 (day of month), 0x08 (month), 0x09 (year
  of the century) and, by the PC convention QEMU follows, 0x32 (century).
  They are computed from virtual time: the calendar reads
  ``start + clock.now // clock.ips`` seconds (``start`` is a datetime - naive
  means UTC - or epoch seconds; the default 2000-01-01 00:00:00 makes every
  run identical), in BCD or binary per register B bit 2 and 24- or 12-hour
  form (bit 7 = PM) per bit 1.  The time base ticks seconds at multiples of
  ``clock.ips`` instructions; a format change affects the next read.
- Register A: bit 7 UIP reads 1 during the last 244 us of every second while
  the clock runs (the update itself is instantaneous at the second
  boundary, so time registers are never seen mid-update); bits 0-3 select
  the periodic rate (1 = 256 Hz, 2 = 128 Hz, n >= 3: 32768 >> (n - 1) Hz, 0 =
  off); bits 4-6 (divider control) are stored only.
- Register B: SET (bit 7) stops updates and lets the guest write the time
  registers; the written bytes read back as written while SET is 1, and when
  SET clears the clock continues from them (normalised as mktime does, and
  with the day of week recomputed), advancing at the next second boundary
  of the still-running divider chain.  Setting SET clears UIE (bit 4).  A
  time register written while the clock runs sets the time at once (QEMU).
  PIE/AIE/UIE (bits 6/5/4) enable the interrupt sources; SQWE and DSE are
  stored only.
- Register C: IRQF | PF | AF | UF, all cleared by reading it.  PF is set at
  every periodic tick, UF at every update, AF at an update whose time matches
  the alarm registers 0x01/0x03/0x05 (a byte of the form 11xxxxxx matches
  anything), each whether or not enabled; IRQF = PF.PIE | AF.AIE | UF.UIE and
  the IRQ8 line follows IRQF.  Flags are computed lazily from virtual time;
  a clock timer runs only while the line is low and an enabled source will
  set it, so a guest that never reads C costs nothing (and, as on a PC with an
  edge-triggered PIC, gets no further interrupts).
- Register D: VRT (bit 7) always 1; writes to C and D are ignored.
- CMOS RAM 0x0E-0x7F: plain bytes, with the memory size bytes a PC BIOS
  fills in from ``mem_size`` (in bytes): 0x15/0x16 base memory in KiB (at most
  640), 0x17/0x18 and 0x30/0x31 memory above 1 MiB in KiB (at most 65535),
  0x34/0x35 memory above 16 MiB in 64 KiB units (at most 65535).

Not modelled: the divider-control states (a reset or stopped divider chain),
daylight saving (DSE), the square-wave output, the 12/24-hour and BCD/binary
conversion that a real chip does not do (it keeps whatever bytes were
written: here the time registers are always produced in the current format,
as in QEMU), the CMOS checksum (0x2E/0x2F) and the other BIOS-owned bytes
(equipment, drives, PS/2 century byte 0x37), years outside what the
century/year registers can express, and leap seconds.  The calendar is
Gregorian (2100 is not a leap year; the chip's own rule, every fourth year,
would make it one).  ``reset()`` gives a
fresh device (clock back at ``start + now``, RAM cleared and refilled),
although a real battery-backed RTC keeps both.

Invariants: the time registers are stored only while SET is 1 (``cmos``
holds them then); otherwise the calendar is ``offset + clock.now // ips``
seconds since 1970-01-01.  ``irq.level`` equals IRQF.  PF/UF/AF are the
latched flags up to ``flags_time``; events after it are folded in lazily.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..clock import Clock, Timer
from ..irq import IrqLine

INDEX_PORT, DATA_PORT = 0x70, 0x71
RTC_IRQ = 8
CMOS_SIZE = 128
INDEX_MASK, NMI_MASK_BIT = 0x7F, 0x80

# Clock registers.
REG_SECONDS, REG_SECONDS_ALARM = 0x00, 0x01
REG_MINUTES, REG_MINUTES_ALARM = 0x02, 0x03
REG_HOURS, REG_HOURS_ALARM = 0x04, 0x05
REG_DAY_OF_WEEK, REG_DAY_OF_MONTH, REG_MONTH, REG_YEAR = 0x06, 0x07, 0x08, 0x09
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
REG_CENTURY = 0x32
TIME_REGS = (REG_SECONDS, REG_MINUTES, REG_HOURS, REG_DAY_OF_WEEK, REG_DAY_OF_MONTH,
             REG_MONTH, REG_YEAR, REG_CENTURY)
ALARM_REGS = (REG_SECONDS_ALARM, REG_MINUTES_ALARM, REG_HOURS_ALARM)

# Memory size bytes (IBM AT CMOS layout as firmware fills it).
REG_BASE_MEM_LO, REG_BASE_MEM_HI = 0x15, 0x16
REG_EXT_MEM_LO, REG_EXT_MEM_HI = 0x17, 0x18
REG_EXT_MEM2_LO, REG_EXT_MEM2_HI = 0x30, 0x31
REG_HIGH_MEM_LO, REG_HIGH_MEM_HI = 0x34, 0x35

# Register A.
A_UIP = 0x80
A_WRITABLE = 0x7F
A_RATE = 0x0F
A_POWER_ON = 0x26                   # 32.768 kHz time base, 1024 Hz periodic rate
# Register B.
B_SET, B_PIE, B_AIE, B_UIE = 0x80, 0x40, 0x20, 0x10
B_SQWE, B_BINARY, B_24H, B_DSE = 0x08, 0x04, 0x02, 0x01
B_POWER_ON = B_24H                  # BCD, 24-hour, no interrupts (QEMU)
# Register C.
C_IRQF, C_PF, C_AF, C_UF = 0x80, 0x40, 0x20, 0x10
# Register D.
D_VRT = 0x80

PM_BIT = 0x80
ALARM_DONT_CARE = 0xC0              # 11xxxxxx matches every value
TIME_BASE_HZ = 32768
UIP_NS = 244_000
SECONDS_PER_DAY = 86400

DEFAULT_START = datetime(2000, 1, 1)

KIB = 1024
MIB = 1024 * KIB


def _rate_divider(rate_select: int) -> int | None:
    """Time-base cycles per periodic tick (MC146818 table 5, 32.768 kHz time base)."""
    if rate_select == 0:
        return None
    if rate_select <= 2:
        return 1 << (rate_select + 6)        # 1 -> 256 Hz, 2 -> 128 Hz
    return 1 << (rate_select - 1)


# -- calendar arithmetic (proleptic Gregorian, days since 1970-01-01) --------------
def days_from_civil(year: int, month: int, day: int) -> int:
    """Linear in ``day``, so out-of-range days normalise (H. Hinnant's algorithm)."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(days: int) -> tuple[int, int, int]:
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def epoch_seconds(start: datetime | int | float) -> int:
    """A start time as whole seconds since 1970-01-01 00:00:00 (naive datetimes are UTC)."""
    if isinstance(start, datetime):
        if start.tzinfo is not None:
            start = start.astimezone(timezone.utc).replace(tzinfo=None)
        days = days_from_civil(start.year, start.month, start.day)
        return days * SECONDS_PER_DAY + start.hour * 3600 + start.minute * 60 + start.second
    return int(start)


def _to_bcd(value: int) -> int:
    return ((value // 10 % 10) << 4) | (value % 10)


def _from_bcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0x0F)


class Rtc:
    """MC146818 RTC + CMOS RAM: ``attach(bus)`` claims 0x70-0x71; ``irq`` is IRQ8."""

    name = "rtc"

    def __init__(self, clock: Clock, irq: IrqLine, *, start: datetime | int | float = DEFAULT_START,
                 mem_size: int = 0, name: str = "rtc"):
        self.clock = clock
        self.irq = irq
        self.start_seconds = epoch_seconds(start)
        self.mem_size = mem_size
        self.name = name
        self.uip_insns = clock.ns_to_insns(UIP_NS)
        self._event: Timer | None = None
        self._register_readers = {REG_A: self._read_a, REG_B: lambda: self.cmos[REG_B],
                                  REG_C: self._read_c, REG_D: lambda: D_VRT}
        self._register_writers = {REG_A: self._write_a, REG_B: self._write_b,
                                  REG_C: _ignore, REG_D: _ignore}
        self.reset()

    # -------------------------------------------------------------- lifecycle
    def attach(self, bus) -> None:
        bus.add(INDEX_PORT, DATA_PORT + 1, self, self.name)

    def reset(self) -> None:
        self._cancel_event()
        self.cmos = bytearray(CMOS_SIZE)
        self.cmos[REG_A] = A_POWER_ON
        self.cmos[REG_B] = B_POWER_ON
        self._fill_memory_size()
        self.index = 0
        self._nmi_masked = False
        self.offset = self.start_seconds          # calendar = offset + now // ips
        self.pf = self.af = self.uf = False
        self.flags_time = self.clock.now
        self._update()

    def _fill_memory_size(self) -> None:
        base_kib = min(self.mem_size // KIB, 640)
        ext_kib = min(max(0, self.mem_size // KIB - 1024), 0xFFFF)
        high_64k = min(max(0, (self.mem_size - 16 * MIB) // (64 * KIB)), 0xFFFF)
        for lo, value in ((REG_BASE_MEM_LO, base_kib), (REG_EXT_MEM_LO, ext_kib),
                          (REG_EXT_MEM2_LO, ext_kib), (REG_HIGH_MEM_LO, high_64k)):
            self.cmos[lo] = value & 0xFF
            self.cmos[lo + 1] = value >> 8

    _STATE_FIELDS = ("index", "offset", "pf", "af", "uf", "flags_time")

    def snapshot(self) -> dict:
        state = {f: getattr(self, f) for f in self._STATE_FIELDS}
        state["cmos"] = bytes(self.cmos)
        state["nmi_masked"] = self._nmi_masked
        event = self._event
        state["event_deadline"] = None if event is None or event.cancelled else event.deadline
        return state

    def restore(self, state: dict) -> None:
        self._cancel_event()
        if len(state["cmos"]) != CMOS_SIZE:
            raise ValueError("RTC snapshot has the wrong CMOS size")
        for f in self._STATE_FIELDS:
            setattr(self, f, state[f])
        self.cmos = bytearray(state["cmos"])
        self._nmi_masked = state["nmi_masked"]
        if state["event_deadline"] is not None:
            self._event = self.clock.at(state["event_deadline"], self._event_fired,
                                        f"{self.name}.irq")
        self.irq.set(self.irqf)

    # ---------------------------------------------------------------- views
    @property
    def nmi_masked(self) -> bool:
        """Bit 7 of the last write to port 0x70 (the PC's NMI disable)."""
        return self._nmi_masked

    @property
    def running(self) -> bool:
        return not self.cmos[REG_B] & B_SET

    @property
    def irqf(self) -> bool:
        b = self.cmos[REG_B]
        return bool((self.pf and b & B_PIE) or (self.af and b & B_AIE) or (self.uf and b & B_UIE))

    def seconds(self) -> int:
        """The calendar time in seconds since 1970 (what the time registers show)."""
        if self.running:
            return self.offset + self.clock.now // self.clock.ips
        return self._decode_time(self.cmos)

    def datetime(self) -> datetime:
        """The current calendar time (for the UI)."""
        year, month, day = civil_from_days(self.seconds() // SECONDS_PER_DAY)
        tod = self.seconds() % SECONDS_PER_DAY
        return datetime(year, month, day, tod // 3600, tod // 60 % 60, tod % 60)

    def update_in_progress(self) -> bool:
        ips = self.clock.ips
        return self.running and self.clock.now % ips >= ips - self.uip_insns

    # ------------------------------------------------------------------ ports
    def port_read(self, port: int, size: int) -> int:
        value = 0
        for i in range(size):
            value |= self._read_port_byte(port + i) << (8 * i)
        return value

    def port_write(self, port: int, size: int, value: int) -> None:
        for i in range(size):
            self._write_port_byte(port + i, value >> (8 * i) & 0xFF)

    def _read_port_byte(self, port: int) -> int:
        return self.read_register(self.index) if port == DATA_PORT else 0xFF

    def _write_port_byte(self, port: int, value: int) -> None:
        if port == INDEX_PORT:
            self.index = value & INDEX_MASK
            self._nmi_masked = bool(value & NMI_MASK_BIT)
        elif port == DATA_PORT:
            self.write_register(self.index, value)

    # -------------------------------------------------------------- registers
    def read_register(self, index: int) -> int:
        if index in TIME_REGS:
            return self._encode_time(self.seconds())[index] if self.running else self.cmos[index]
        reader = self._register_readers.get(index)
        return reader() if reader is not None else self.cmos[index]

    def write_register(self, index: int, value: int) -> None:
        writer = self._register_writers.get(index)
        if writer is not None:
            writer(value)
        elif index in TIME_REGS:
            self._write_time(index, value)
        elif index in ALARM_REGS:
            self._latch()
            self.cmos[index] = value
            self._update()
        else:
            self.cmos[index] = value

    def _read_a(self) -> int:
        return self.cmos[REG_A] | (A_UIP if self.update_in_progress() else 0)

    def _read_c(self) -> int:
        self._latch()
        value = ((C_IRQF if self.irqf else 0) | (C_PF if self.pf else 0)
                 | (C_AF if self.af else 0) | (C_UF if self.uf else 0))
        self.pf = self.af = self.uf = False
        self._update()
        return value

    def _write_a(self, value: int) -> None:
        self._latch()
        self.cmos[REG_A] = value & A_WRITABLE
        self._update()

    def _write_b(self, value: int) -> None:
        self._latch()
        was_running = self.running
        if value & B_SET:
            value &= ~B_UIE
        if was_running and value & B_SET:
            regs = self._encode_time(self.seconds(), value)
            self.cmos[REG_B] = value
            for reg in TIME_REGS:                  # freeze: the registers become plain bytes
                self.cmos[reg] = regs[reg]
        else:
            self.cmos[REG_B] = value
            if not was_running and self.running:
                self._set_time(self._decode_time(self.cmos))
        self._update()

    def _write_time(self, index: int, value: int) -> None:
        if not self.running:
            self.cmos[index] = value
            return
        self._latch()
        regs = self._encode_time(self.seconds())
        regs[index] = value
        self._set_time(self._decode_time(regs))
        self._update()

    def _set_time(self, seconds: int) -> None:
        self.offset = seconds - self.clock.now // self.clock.ips

    # --------------------------------------------------------- time encoding
    def _encode_time(self, seconds: int, b: int | None = None) -> dict[int, int]:
        b = self.cmos[REG_B] if b is None else b
        enc = (lambda v: v & 0xFF) if b & B_BINARY else _to_bcd
        days, tod = divmod(seconds, SECONDS_PER_DAY)
        year, month, day = civil_from_days(days)
        hour = tod // 3600
        if b & B_24H:
            hour_byte = enc(hour)
        else:
            hour_byte = enc(hour % 12 or 12) | (PM_BIT if hour >= 12 else 0)
        return {REG_SECONDS: enc(tod % 60), REG_MINUTES: enc(tod // 60 % 60), REG_HOURS: hour_byte,
                REG_DAY_OF_WEEK: enc((days + 4) % 7 + 1), REG_DAY_OF_MONTH: enc(day),
                REG_MONTH: enc(month), REG_YEAR: enc(year % 100), REG_CENTURY: enc(year // 100 % 100)}

    def _decode_time(self, regs) -> int:
        """Time register bytes (current format) -> seconds, normalising as mktime."""
        dec = self._decoder()
        hour = self._decode_hour(regs[REG_HOURS])
        year = dec(regs[REG_CENTURY]) * 100 + dec(regs[REG_YEAR])
        days = days_from_civil(year, dec(regs[REG_MONTH]), dec(regs[REG_DAY_OF_MONTH]))
        return days * SECONDS_PER_DAY + hour * 3600 + dec(regs[REG_MINUTES]) * 60 + dec(regs[REG_SECONDS])

    def _decoder(self):
        return (lambda v: v) if self.cmos[REG_B] & B_BINARY else _from_bcd

    def _decode_hour(self, byte: int) -> int:
        dec = self._decoder()
        if self.cmos[REG_B] & B_24H:
            return dec(byte)
        return dec(byte & ~PM_BIT) % 12 + (12 if byte & PM_BIT else 0)

    # ------------------------------------------------------------------ alarm
    def _alarm_candidates(self) -> tuple[list[int], list[int], list[int]] | None:
        """The hours, minutes and seconds the alarm matches (None: it never matches)."""
        dec = self._decoder()
        out = []
        for reg, limit in ((REG_HOURS_ALARM, 24), (REG_MINUTES_ALARM, 60), (REG_SECONDS_ALARM, 60)):
            byte = self.cmos[reg]
            if byte & ALARM_DONT_CARE == ALARM_DONT_CARE:
                out.append(list(range(limit)))
                continue
            if reg == REG_HOURS_ALARM and not self.cmos[REG_B] & B_24H:
                h12 = dec(byte & ~PM_BIT)
                value = h12 % 12 + (12 if byte & PM_BIT else 0) if 1 <= h12 <= 12 else limit
            else:
                value = dec(byte)
            if value >= limit:
                return None
            out.append([value])
        return out[0], out[1], out[2]

    def _next_alarm(self, after: int) -> int | None:
        """The first calendar second > ``after`` whose time of day matches the alarm."""
        candidates = self._alarm_candidates()
        if candidates is None:
            return None
        hours, minutes, secs = candidates
        day, tod = divmod(after, SECONDS_PER_DAY)
        now = (tod // 3600, tod // 60 % 60, tod % 60)
        for h in hours:                                   # lexicographic successor
            if h < now[0]:
                continue
            for m in minutes:
                if (h, m) < now[:2]:
                    continue
                for s in secs:
                    if (h, m, s) > now:
                        return day * SECONDS_PER_DAY + h * 3600 + m * 60 + s
        return (day + 1) * SECONDS_PER_DAY + hours[0] * 3600 + minutes[0] * 60 + secs[0]

    # -------------------------------------------------- flags and interrupts
    def _ticks(self, t: int, divider: int) -> int:
        """Periodic ticks of ``divider`` time-base cycles completed by instruction count ``t``."""
        return t * TIME_BASE_HZ // (self.clock.ips * divider)

    def _tick_time(self, k: int, divider: int) -> int:
        """The instruction count of periodic tick ``k`` (inverse of ``_ticks``)."""
        return -(-k * self.clock.ips * divider // TIME_BASE_HZ)

    def _latch(self) -> None:
        """Fold the periodic ticks, updates and alarms since ``flags_time`` into PF/UF/AF."""
        now, then, ips = self.clock.now, self.flags_time, self.clock.ips
        if now == then:
            return
        divider = _rate_divider(self.cmos[REG_A] & A_RATE)
        if divider is not None and self._ticks(now, divider) > self._ticks(then, divider):
            self.pf = True
        if self.running and now // ips > then // ips:
            self.uf = True
            first = self.offset + then // ips + 1          # calendar second of the first update
            alarm = self._next_alarm(first - 1)
            if alarm is not None and alarm <= self.offset + now // ips:
                self.af = True
        self.flags_time = now

    def _next_event_time(self) -> int | None:
        """When an enabled, still clear flag will next be set."""
        b, now, ips = self.cmos[REG_B], self.clock.now, self.clock.ips
        times = []
        divider = _rate_divider(self.cmos[REG_A] & A_RATE)
        if b & B_PIE and not self.pf and divider is not None:
            times.append(self._tick_time(self._ticks(now, divider) + 1, divider))
        if self.running and b & B_UIE and not self.uf:
            times.append((now // ips + 1) * ips)
        if self.running and b & B_AIE and not self.af:
            alarm = self._next_alarm(self.seconds())
            if alarm is not None:
                times.append((alarm - self.offset) * ips)
        return min(times) if times else None

    def _update(self) -> None:
        """Latch, drive IRQ8 and schedule the next time it must rise."""
        self._latch()
        self._cancel_event()
        level = self.irqf
        self.irq.set(level)
        if not level:
            deadline = self._next_event_time()
            if deadline is not None:
                self._event = self.clock.at(deadline, self._event_fired, f"{self.name}.irq")

    def _event_fired(self, now: int) -> None:
        self._event = None
        self._update()

    def _cancel_event(self) -> None:
        if self._event is not None:
            self._event.cancel()
            self._event = None


def _ignore(value: int) -> None:
    """Registers C and D are read-only."""
