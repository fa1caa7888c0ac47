"""MC146818 RTC / CMOS: what a kernel's RTC driver observes at ports 0x70/0x71."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tvmm.machine.bus import PortBus
from tvmm.machine.clock import Clock
from tvmm.machine.devices.rtc import Rtc, days_from_civil, civil_from_days
from tvmm.machine.irq import IrqLine

IPS = 1_000_000
SEC, MIN, HOUR, DOW, DAY, MON, YEAR, CENTURY = 0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32
SEC_ALARM, MIN_ALARM, HOUR_ALARM = 0x01, 0x03, 0x05
A, B, C, D = 0x0A, 0x0B, 0x0C, 0x0D
SET, PIE, AIE, UIE, BINARY, H24 = 0x80, 0x40, 0x20, 0x10, 0x04, 0x02
IRQF, PF, AF, UF = 0x80, 0x40, 0x20, 0x10
UIP = 0x80


class Rig:
    def __init__(self, clock=None, **kw):
        self.clock = clock or Clock(ips=IPS)
        self.bus = PortBus()
        self.levels: list[bool] = []
        self.irq = IrqLine("irq8", sink=self.levels.append)
        self.rtc = Rtc(self.clock, self.irq, **kw)
        self.rtc.attach(self.bus)

    def r(self, reg):
        self.bus.port_out(0x70, 1, reg)
        return self.bus.port_in(0x71, 1)

    def w(self, reg, value):
        self.bus.port_out(0x70, 1, reg)
        self.bus.port_out(0x71, 1, value)

    def at(self, seconds):
        """Advance to ``seconds`` of virtual time (may be fractional)."""
        self.clock.advance(round(seconds * self.clock.ips))

    def time(self):
        return tuple(self.r(reg) for reg in (YEAR, MON, DAY, HOUR, MIN, SEC))


@pytest.fixture
def rig():
    return Rig()


def bcd(v):
    return (v // 10) << 4 | v % 10


# --------------------------------------------------------------- time of day
def test_default_start_and_time_after_virtual_seconds(rig):
    assert rig.time() == (0x00, 0x01, 0x01, 0x00, 0x00, 0x00)
    assert rig.r(CENTURY) == 0x20
    assert rig.r(DOW) == 7                            # 2000-01-01 was a Saturday
    rig.at(3661.5)
    assert rig.time() == (0x00, 0x01, 0x01, 0x01, 0x01, 0x01)
    rig.at(86400 * 59 + 3600 * 23 + 59 * 60 + 59)     # 2000 is a leap year
    assert rig.time() == (0x00, 0x02, 0x29, 0x23, 0x59, 0x59)
    rig.at(86400 * 60)
    assert rig.time() == (0x00, 0x03, 0x01, 0x00, 0x00, 0x00)
    assert rig.rtc.datetime() == datetime(2000, 3, 1)


def test_configured_start_time_rolls_over_the_year_and_century_byte():
    rig = Rig(start=datetime(2099, 12, 31, 23, 59, 58))
    rig.at(1.999999)
    assert rig.time() == (0x99, 0x12, 0x31, 0x23, 0x59, 0x59)
    rig.at(2)
    assert rig.time() == (0x00, 0x01, 0x01, 0x00, 0x00, 0x00)
    assert rig.r(CENTURY) == 0x21
    assert rig.r(DOW) == 6                            # 2100-01-01 is a Friday


def test_start_as_epoch_seconds_or_aware_datetime():
    assert Rig(start=0).time() == (0x70, 0x01, 0x01, 0x00, 0x00, 0x00)
    assert Rig(start=0).r(DOW) == 5                   # Thursday
    tz = timezone(timedelta(hours=2))
    rig = Rig(start=datetime(2024, 6, 1, 2, 30, tzinfo=tz))
    assert rig.time() == (0x24, 0x06, 0x01, 0x00, 0x30, 0x00)   # kept in UTC
    rig = Rig(start=1_700_000_000)                    # 2023-11-14 22:13:20 UTC
    assert rig.time() == (0x23, 0x11, 0x14, 0x22, 0x13, 0x20)


def test_binary_and_12_hour_formats():
    rig = Rig(start=datetime(2021, 7, 4, 13, 45, 59))
    assert rig.r(HOUR) == 0x13
    rig.w(B, H24 | BINARY)
    assert rig.time() == (21, 7, 4, 13, 45, 59)
    assert rig.r(CENTURY) == 20
    rig.w(B, BINARY)                                  # 12-hour binary: PM flag in bit 7
    assert rig.r(HOUR) == 0x80 | 1
    rig.w(B, 0)                                       # 12-hour BCD
    assert rig.r(HOUR) == 0x81
    for start, expected in ((datetime(2021, 1, 1, 0, 5), 0x12), (datetime(2021, 1, 1, 12, 5), 0x92),
                            (datetime(2021, 1, 1, 11, 5), 0x11), (datetime(2021, 1, 1, 23, 5), 0x91)):
        r = Rig(start=start)
        r.w(B, 0)
        assert r.r(HOUR) == expected


def test_update_in_progress_during_the_last_244_us_of_each_second(rig):
    uip_insns = 244                                   # 244 us at 1 M instructions per second
    rig.clock.advance(IPS - uip_insns - 1)
    assert rig.r(A) & UIP == 0
    rig.clock.advance(IPS - uip_insns)
    assert rig.r(A) & UIP
    assert rig.r(SEC) == 0x00                         # not updated yet
    rig.clock.advance(IPS - 1)
    assert rig.r(A) & UIP
    rig.clock.advance(IPS)
    assert rig.r(A) & UIP == 0
    assert rig.r(SEC) == 0x01
    assert rig.r(A) == 0x26                           # the rest of register A
    rig.w(B, SET | H24)
    rig.clock.advance(2 * IPS - 1)
    assert rig.r(A) & UIP == 0                        # no updates while SET


def test_register_d_and_read_only_bits(rig):
    assert rig.r(D) == 0x80
    rig.w(D, 0x00)
    rig.w(C, 0xFF)
    assert rig.r(D) == 0x80 and rig.r(C) == 0x00
    rig.w(A, 0xFF)
    rig.clock.advance(10)
    assert rig.r(A) == 0x7F                           # UIP is read-only


# ------------------------------------------------------------------- SET bit
def test_set_bit_freezes_and_written_time_continues_after_set_clears(rig):
    rig.at(5.25)
    rig.w(B, SET | H24)
    assert rig.r(B) == SET | H24
    rig.at(50)
    assert rig.r(SEC) == 0x05                         # frozen
    for reg, value in ((YEAR, 0x24), (MON, 0x02), (DAY, 0x29), (HOUR, 0x12), (MIN, 0x34),
                       (SEC, 0x56), (DOW, 0x01), (CENTURY, 0x20)):
        rig.w(reg, value)
    rig.at(60)
    assert rig.time() == (0x24, 0x02, 0x29, 0x12, 0x34, 0x56)   # reads what was written
    assert rig.r(DOW) == 0x01
    rig.w(B, H24)                                     # at 60.0: a second boundary
    assert rig.time() == (0x24, 0x02, 0x29, 0x12, 0x34, 0x56)
    assert rig.r(DOW) == 0x05                         # recomputed: 2024-02-29 was a Thursday
    rig.at(63.5)
    assert rig.time() == (0x24, 0x02, 0x29, 0x12, 0x34, 0x59)
    rig.at(64)
    assert rig.time() == (0x24, 0x02, 0x29, 0x12, 0x35, 0x00)


def test_after_set_clears_the_first_update_keeps_the_divider_phase(rig):
    rig.at(10.75)
    rig.w(B, SET | H24)
    rig.w(SEC, 0x00)
    rig.w(B, H24)                                     # released 0.25 s before a boundary
    assert rig.r(SEC) == 0x00
    rig.at(10.999)
    assert rig.r(SEC) == 0x00
    rig.at(11)
    assert rig.r(SEC) == 0x01


def test_setting_set_clears_uie_and_updates_stop(rig):
    rig.w(A, 0x20)                                    # periodic flag off: only UF matters here
    rig.w(B, UIE | H24)
    rig.r(C)
    rig.w(B, SET | UIE | H24)
    assert rig.r(B) == SET | H24
    rig.at(3)
    assert rig.r(C) == 0x00                           # no update ended while SET


def test_time_register_written_while_running_takes_effect_at_once(rig):
    rig.at(7.5)
    rig.w(MIN, 0x30)
    assert rig.time()[-2:] == (0x30, 0x07)
    rig.at(8)
    assert rig.time()[-2:] == (0x30, 0x08)


# ---------------------------------------------------------------- interrupts
def run_handler(rig, until_insns):
    """Run to ``until_insns``, acting as an IRQ8 handler that reads C on every rising edge."""
    edges = []
    while True:
        deadline = rig.clock.next_deadline()
        if deadline is None or deadline > until_insns:
            rig.clock.advance(until_insns)
            return edges
        rig.clock.advance(deadline)
        if rig.irq.level:
            edges.append((rig.clock.now, rig.r(C)))


@pytest.mark.parametrize("rate, hz", [(3, 8192), (6, 1024), (1, 256), (2, 128), (15, 2)])
def test_periodic_interrupt_rate(rig, rate, hz):
    rig.w(A, 0x20 | rate)
    rig.w(B, PIE | H24)
    edges = run_handler(rig, IPS)
    assert len(edges) == hz
    assert all(c & (IRQF | PF | AF) == IRQF | PF for _, c in edges)
    assert [c & UF for _, c in edges].count(UF) == 1      # the update at 1 s, with the last tick
    times = [t for t, _ in edges]
    gaps = {b - a for a, b in zip(times, times[1:])}
    assert max(gaps) - min(gaps) <= 1 and abs(min(gaps) - IPS // hz) <= 1
    assert times[-1] == IPS


def test_periodic_rate_zero_is_off_and_pf_is_set_without_pie(rig):
    rig.w(A, 0x20)
    rig.w(B, PIE | H24)
    assert run_handler(rig, IPS) == []
    rig.w(A, 0x26)
    rig.w(B, H24)
    rig.at(1.01)
    assert rig.r(C) == PF | UF                        # flags set, no IRQF: not enabled
    assert rig.irq.level is False


def test_status_c_is_cleared_by_reading_and_the_line_stays_high_until_then(rig):
    rig.w(B, PIE | H24)                               # 1024 Hz
    rig.at(0.01)
    assert rig.irq.level is True
    assert rig.levels == [True]
    assert rig.clock.pending() == []                  # nothing more can happen until C is read
    rig.at(0.5)
    assert rig.levels == [True]                       # no new edge without the C read
    assert rig.r(C) == IRQF | PF
    assert rig.irq.level is False
    assert rig.r(C) == 0x00
    rig.at(0.501)
    assert rig.levels == [True, False, True]


def test_enabling_pie_with_pf_already_latched_interrupts_at_once(rig):
    rig.at(0.01)
    rig.w(B, PIE | H24)
    assert rig.irq.level is True


def test_update_ended_interrupt_each_second(rig):
    rig.w(A, 0x20)
    rig.w(B, UIE | H24)
    edges = run_handler(rig, 5 * IPS)
    assert [t for t, _ in edges] == [IPS * k for k in range(1, 6)]
    assert all(c == IRQF | UF for _, c in edges)


def test_alarm_interrupt_at_the_matching_second(rig):
    rig.w(A, 0x20)
    rig.w(HOUR_ALARM, 0x00)
    rig.w(MIN_ALARM, 0x01)
    rig.w(SEC_ALARM, 0x05)
    rig.w(B, AIE | H24)
    edges = run_handler(rig, 200 * IPS)
    assert edges == [(65 * IPS, IRQF | AF | UF)]


def test_alarm_dont_care_bytes_match_every_value(rig):
    rig.w(HOUR_ALARM, 0xC0)
    rig.w(MIN_ALARM, 0xFF)
    rig.w(SEC_ALARM, 0x30)
    rig.w(B, AIE | H24)
    edges = run_handler(rig, 200 * IPS)
    assert [t // IPS for t, _ in edges] == [30, 90, 150]


def test_alarm_in_12_hour_binary_mode():
    rig = Rig(start=datetime(2020, 5, 5, 12, 59, 58))
    rig.w(B, BINARY)                                  # 12-hour, binary
    rig.w(HOUR_ALARM, 0x80 | 1)                       # 1 PM
    rig.w(MIN_ALARM, 0)
    rig.w(SEC_ALARM, 0)
    rig.w(B, BINARY | AIE)
    edges = run_handler(rig, 10 * IPS)
    assert [t for t, _ in edges] == [2 * IPS]


def test_alarm_matched_while_the_line_was_high_is_still_flagged(rig):
    rig.w(SEC_ALARM, 0x02)
    rig.w(A, 0x20)
    rig.w(MIN_ALARM, 0xC0)
    rig.w(HOUR_ALARM, 0xC0)
    rig.w(B, UIE | H24)
    rig.at(5)                                         # IRQ high since 1 s; C never read
    assert rig.r(C) == IRQF | UF | AF                 # the alarm at 2 s was latched lazily
    rig.at(5.5)
    assert rig.r(C) == 0x00


def test_impossible_alarm_never_fires(rig):
    rig.w(HOUR_ALARM, 0x25)
    rig.w(B, AIE | H24)
    assert run_handler(rig, 3 * 86400 * IPS) == []


# --------------------------------------------------------------- index / RAM
def test_index_port_nmi_mask_and_ram(rig):
    rig.bus.port_out(0x70, 1, 0x80 | 0x40)
    assert rig.rtc.nmi_masked is True
    assert rig.rtc.index == 0x40
    rig.bus.port_out(0x71, 1, 0x5A)
    rig.bus.port_out(0x70, 1, 0x40)
    assert rig.rtc.nmi_masked is False
    assert rig.bus.port_in(0x71, 1) == 0x5A
    assert rig.bus.port_in(0x70, 1) == 0xFF
    rig.w(0x7F, 0x11)
    assert rig.r(0x7F) == 0x11


@pytest.mark.parametrize("mem_size, expected", [
    (64 << 20, {0x15: 0x80, 0x16: 0x02, 0x17: 0x00, 0x18: 0xFC, 0x30: 0x00, 0x31: 0xFC,
                0x34: 0x00, 0x35: 0x03}),
    (512 << 10, {0x15: 0x00, 0x16: 0x02, 0x17: 0, 0x18: 0, 0x34: 0, 0x35: 0}),
    (8 << 30, {0x17: 0xFF, 0x18: 0xFF, 0x30: 0xFF, 0x31: 0xFF, 0x34: 0xFF, 0x35: 0xFF}),
])
def test_memory_size_bytes(mem_size, expected):
    rig = Rig(mem_size=mem_size)
    assert {reg: rig.r(reg) for reg in expected} == expected


def test_civil_day_arithmetic_round_trips():
    for days in range(-800_000, 800_000, 997):
        assert days_from_civil(*civil_from_days(days)) == days
    assert days_from_civil(2000, 13, 1) == days_from_civil(2001, 1, 1)      # normalises
    assert days_from_civil(2000, 3, 0) == days_from_civil(2000, 2, 29)


# ------------------------------------------------------------ reset/snapshot
def test_reset_gives_power_on_registers_and_start_time(rig):
    rig.w(B, SET | PIE | H24)
    rig.w(YEAR, 0x55)
    rig.w(0x40, 0x12)
    rig.rtc.reset()
    assert rig.r(B) == H24 and rig.r(A) == 0x26 and rig.r(0x40) == 0
    rig.at(3)
    assert rig.time() == (0x00, 0x01, 0x01, 0x00, 0x00, 0x03)
    assert rig.irq.level is False


def observe(rig, steps):
    seen = []
    for kind, arg in steps:
        if kind == "at":
            rig.at(arg)
        elif kind == "w":
            rig.w(*arg)
        elif kind == "r":
            seen.append((arg, rig.r(arg)))
        seen.append((rig.clock.now, rig.irq.level, rig.clock.pending()))
    return seen


def test_snapshot_restore_equivalence_with_pending_interrupt_event():
    a = Rig(start=datetime(2030, 1, 31, 23, 59, 50), mem_size=32 << 20)
    a.w(SEC_ALARM, 0x55)
    a.w(MIN_ALARM, 0xC0)
    a.w(HOUR_ALARM, 0xC0)
    a.w(A, 0x2F)                                      # 2 Hz
    a.w(B, PIE | AIE | H24)
    a.at(1.25)
    a.r(C)
    a.w(0x50, 0xAB)
    a.bus.port_out(0x70, 1, 0x80 | SEC)
    a.at(1.3)
    state = a.rtc.snapshot()
    assert a.clock.pending()                          # the next periodic tick

    b = Rig(start=0)
    b.clock.advance(a.clock.now)
    b.rtc.restore(state)
    assert b.rtc.snapshot() == state
    assert b.clock.pending() == a.clock.pending()
    assert b.rtc.nmi_masked is True
    steps = [("r", SEC), ("at", 1.6), ("r", C), ("at", 2.0), ("r", C), ("at", 5.0), ("r", C),
             ("w", (B, SET | H24)), ("w", (SEC, 0x10)), ("at", 7.7), ("r", SEC),
             ("w", (B, UIE | AIE | H24)), ("at", 9.0), ("r", C), ("r", SEC), ("at", 15.0),
             ("r", C), ("r", A), ("r", MIN), ("r", 0x50)]
    assert observe(a, steps) == observe(b, steps)
    assert a.rtc.snapshot() == b.rtc.snapshot()
