"""The 8254 PIT and port 0x61: counts, outputs and IRQ0 timing in virtual time."""

import pytest

from tvmm.machine.bus import PortBus
from tvmm.machine.clock import Clock
from tvmm.machine.devices.pic import Pic
from tvmm.machine.devices.pit import PIT_HZ, Pit, SystemControlPortB
from tvmm.machine.irq import IrqLine

IPS = 100_000_000


class Rig:
    def __init__(self, ips=IPS):
        self.clock = Clock(ips)
        self.edges = []                        # (time, level) of IRQ0
        self.irq0 = IrqLine("irq0", sink=lambda lvl: self.edges.append((self.clock.now, lvl)))
        self.pit = Pit(self.clock, self.irq0)
        self.port61 = SystemControlPortB(self.clock, self.pit)
        self.bus = PortBus()
        self.pit.attach(self.bus)
        self.port61.attach(self.bus)

    def out(self, port, value):
        self.bus.port_out(port, 1, value)

    def inb(self, port):
        return self.bus.port_in(port, 1)

    def program(self, ch, mode, count, access=3, bcd=0):
        self.out(0x43, ch << 6 | access << 4 | mode << 1 | bcd)
        if access in (1, 3):
            self.out(0x40 + ch, count & 0xFF)
        if access in (2, 3):
            self.out(0x40 + ch, count >> 8 & 0xFF)

    def run_to(self, t):
        """What the runner does: advance through each deadline up to ``t``."""
        clock = self.clock
        while (d := clock.next_deadline()) is not None and d <= t:
            clock.advance(max(d, clock.now))
        clock.advance(t)

    def time_of_tick(self, k):
        return -(-k * self.clock.ips // PIT_HZ)

    def tick_now(self):
        return self.clock.now * PIT_HZ // self.clock.ips

    def rises(self, since=0):
        return [t for t, lvl in self.edges if lvl and t >= since]

    def latch(self, ch):
        self.out(0x43, ch << 6)
        return self.inb(0x40 + ch) | self.inb(0x40 + ch) << 8

    def status(self, ch):
        self.out(0x43, 0xE0 | 2 << ch)         # read-back: status only
        return self.inb(0x40 + ch)


@pytest.mark.parametrize("ips,divisor", [(IPS, 1193), (IPS, 11932), (3_000_000, 2000), (IPS, 0)])
def test_mode2_irq0_rate_over_a_virtual_second(ips, divisor):
    r = Rig(ips)
    r.program(0, 2, divisor)
    n = divisor or 65536
    r.edges.clear()
    r.run_to(ips)                              # one virtual second
    rises = r.rises()
    written_tick = 0
    # Rising edges at pulses L + kN with L = written_tick + 1 (load on the next pulse).
    expected = [r.time_of_tick(written_tick + 1 + k * n) for k in range(1, PIT_HZ // n + 1)]
    expected = [t for t in expected if t <= ips]
    assert rises == expected
    assert abs(len(rises) - PIT_HZ / n) <= 1
    gaps = {b - a for a, b in zip(rises, rises[1:])}
    period = n * ips / PIT_HZ
    assert all(abs(g - period) <= 1 for g in gaps)
    falls = [t for t, lvl in r.edges if not lvl]
    assert len(falls) == len(rises) or len(falls) == len(rises) + 1   # OUT low one pulse each period


def test_mode2_edges_are_not_lost_when_the_clock_jumps():
    r = Rig()
    r.program(0, 2, 1193)
    r.edges.clear()
    for t in range(0, IPS + 1, IPS // 7):      # coarse advances
        r.clock.advance(t)
    assert len(r.rises()) == 1000


def test_overdue_edges_are_applied_before_a_guest_access():
    r = Rig()
    r.program(0, 2, 1193)
    r.edges.clear()
    r.clock.now = IPS // 100                   # time moved without the timers firing (mid-slice)
    r.status(0)                                # any access catches OUT0 up first
    assert len(r.rises()) == 10
    assert r.clock.pending()[0][0] > IPS // 100


def test_mode2_through_the_pic_interrupts_every_period():
    clock = Clock(IPS)
    intr = IrqLine("intr")
    pic = Pic(intr)
    bus = PortBus()
    pic.attach(bus)
    for port, v in ((0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1),
                    (0xA0, 0x11), (0xA1, 0x28), (0xA1, 2), (0xA1, 1)):
        bus.port_out(port, 1, v)
    pit = Pit(clock, pic.irq_line(0))
    pit.attach(bus)
    pit.program(0, 2, 11932)                   # ~100 Hz
    assert pic.acknowledge() == 0x20          # control word drove OUT high: one early edge
    bus.port_out(0x20, 1, 0x20)
    taken = 0
    while clock.next_deadline() <= IPS:
        clock.advance(clock.next_deadline())
        if intr.level:                         # a CPU with IF=1 takes it and EOIs
            assert pic.acknowledge() == 0x20
            bus.port_out(0x20, 1, 0x20)
            taken += 1
    assert taken == PIT_HZ // 11932          # 99 full periods fit in the second


def test_mode0_one_shot():
    r = Rig()
    r.run_to(12345)
    r.program(0, 0, 5000)
    g = r.tick_now()
    assert not r.irq0.level
    r.edges.clear()
    due = r.time_of_tick(g + 1 + 5000)        # N+1 pulses after the write
    assert r.clock.pending() == [(due, "pit-out0")]
    r.run_to(due - 1)
    assert r.edges == []
    r.run_to(due)
    assert r.edges == [(due, True)]
    r.run_to(IPS)
    assert r.edges == [(due, True)]            # one shot: no further edges
    assert r.clock.pending() == []
    assert r.status(0) & 0x80                  # OUT stays high
    r.program(0, 0, 100)                       # rewriting restarts: OUT low again
    assert r.edges[-1] == (r.clock.now, False)


def test_mode0_counter_reads_down_and_wraps():
    r = Rig()
    r.program(0, 0, 3)
    g = r.tick_now()
    values = []
    for k in range(1, 7):
        r.run_to(r.time_of_tick(g + k))
        values.append(r.latch(0))
    assert values == [3, 2, 1, 0, 0xFFFF, 0xFFFE]


def test_latch_freezes_a_decreasing_counter():
    r = Rig()
    r.program(0, 2, 50000)
    r.run_to(1_000_000)
    r.out(0x43, 0x00)                          # latch counter 0
    r.run_to(2_000_000)
    r.out(0x43, 0x00)                          # a second latch before reading is ignored
    lo = r.inb(0x40)
    r.run_to(3_000_000)
    hi = r.inb(0x40)
    latched = lo | hi << 8
    expected_elapsed = 1_000_000 * PIT_HZ // IPS - 1     # pulses since the load pulse
    assert latched == 50000 - expected_elapsed
    now1 = r.latch(0)
    r.run_to(3_500_000)
    now2 = r.latch(0)
    assert now1 < latched and now2 < now1
    assert now1 - now2 == (3_500_000 * PIT_HZ // IPS) - (3_000_000 * PIT_HZ // IPS)


def test_unlatched_reads_follow_access_mode():
    r = Rig()
    r.program(0, 2, 0x34, access=1)            # LSB only: count 0x0034
    r.run_to(r.time_of_tick(r.tick_now() + 1))  # loaded on the next pulse
    assert r.inb(0x40) == 0x34 and r.inb(0x40) == 0x34
    r.program(1, 2, 0x5600, access=2)          # MSB only: count 0x5600
    r.run_to(r.time_of_tick(r.tick_now() + 2))
    assert r.inb(0x41) == 0x55                 # 0x5600 - 1 = 0x55FF
    assert r.inb(0x41) == 0x55
    r.program(1, 2, 0x5600)                    # LSB then MSB, alternating
    r.run_to(r.time_of_tick(r.tick_now() + 3))
    assert (r.inb(0x41), r.inb(0x41)) == (0xFE, 0x55)


def test_read_back_status_and_count():
    r = Rig()
    r.run_to(1000)
    r.out(0x43, 0x34)                          # counter 0, LSB/MSB, mode 2, binary
    assert r.status(0) == 0x80 | 0x40 | 0x34   # OUT high, NULL COUNT, LSB/MSB, mode 2
    r.out(0x40, 0x10)
    r.out(0x40, 0x27)                          # 10000
    assert r.status(0) & 0x40                  # not loaded until the next pulse
    r.run_to(r.time_of_tick(r.tick_now() + 1))
    assert r.status(0) == 0x80 | 0x34          # loaded: NULL COUNT clear
    # latch count and status of counters 0 and 2 at once; status reads first
    r.program(2, 0, 500)
    r.run_to(r.time_of_tick(r.tick_now() + 10))
    r.out(0x43, 0xC0 | 0b1010)                 # both count and status, counters 0 and 2
    r.run_to(r.clock.now + 100_000)
    s2 = r.inb(0x42)
    assert s2 == 0x30                          # OUT low (mode 0), loaded, LSB/MSB, mode 0
    c2 = r.inb(0x42) | r.inb(0x42) << 8
    assert c2 == 500                           # counter 2's gate is low (port 0x61): held
    s0 = r.inb(0x40)
    assert s0 & 0x3F == 0x34
    c0 = r.inb(0x40) | r.inb(0x40) << 8
    assert 0 < c0 < 10000
    assert r.latch(0) != c0                    # latch released; the counter moved on


def test_mode6_and_7_alias_2_and_3_and_status_keeps_bits():
    r = Rig()
    r.out(0x43, 0x3C)                          # mode 6
    r.out(0x40, 100); r.out(0x40, 0)
    r.run_to(r.time_of_tick(r.tick_now() + 200))
    assert r.status(0) & 0x0E == 0x0C
    assert len(r.rises()) >= 2                 # periodic like mode 2


def test_bcd_counting():
    r = Rig()
    r.program(0, 0, 0x1000, bcd=1)             # 1000 decimal
    g = r.tick_now()
    r.run_to(r.time_of_tick(g + 1 + 11))
    assert r.latch(0) == 0x0989
    assert r.status(0) & 1
    r.program(0, 0, 0x0000, bcd=1)             # 0 is 10000 in BCD
    g = r.tick_now()
    r.run_to(r.time_of_tick(g + 2))
    assert r.latch(0) == 0x9999


def test_count_zero_is_65536():
    r = Rig()
    r.program(0, 0, 0)
    g = r.tick_now()
    assert r.clock.pending() == [(r.time_of_tick(g + 1 + 65536), "pit-out0")]


def test_mode2_new_count_takes_effect_at_end_of_period():
    r = Rig()
    r.program(0, 2, 1000)
    g0 = r.tick_now()
    r.run_to(r.time_of_tick(g0 + 300))
    r.out(0x40, 100); r.out(0x40, 0)           # new count 100 mid-period
    r.edges.clear()
    r.run_to(r.time_of_tick(g0 + 1 + 1000 + 250))
    assert r.rises() == [r.time_of_tick(g0 + 1 + 1000 + 100 * k) for k in range(0, 3)]


def test_mode3_square_wave():
    r = Rig()
    r.program(0, 3, 10)
    g = r.tick_now() + 1
    r.edges.clear()
    r.run_to(r.time_of_tick(g + 30))
    assert r.edges == [(r.time_of_tick(g + 5), False), (r.time_of_tick(g + 10), True),
                       (r.time_of_tick(g + 15), False), (r.time_of_tick(g + 20), True),
                       (r.time_of_tick(g + 25), False), (r.time_of_tick(g + 30), True)]
    r.program(0, 3, 7)                         # odd: high 4 pulses, low 3
    g = r.tick_now() + 1
    r.edges.clear()
    r.run_to(r.time_of_tick(g + 14))
    assert [t for t, _ in r.edges] == [r.time_of_tick(g + k) for k in (4, 7, 11, 14)]


def test_mode4_software_strobe():
    r = Rig()
    r.program(0, 4, 20)
    g = r.tick_now() + 1
    r.edges.clear()
    r.run_to(IPS // 10)
    assert r.edges == [(r.time_of_tick(g + 20), False), (r.time_of_tick(g + 21), True)]


def test_port61_gate_controls_counter2_and_reports_out2():
    r = Rig()
    p61 = r.port61
    # Linux's PIT calibration: gate high, speaker off, counter 2 mode 0, poll bit 5.
    r.out(0x61, (r.inb(0x61) & ~0x02) | 0x01)
    assert r.inb(0x61) & 0x0F == 0x01
    r.program(2, 0, 1193)                      # ~1 ms
    g = r.tick_now()
    assert not r.inb(0x61) & 0x20
    r.run_to(r.time_of_tick(g + 1193))
    assert not r.inb(0x61) & 0x20
    r.run_to(r.time_of_tick(g + 1194))
    assert r.inb(0x61) & 0x20
    assert r.rises() == []                     # counter 0 untouched: IRQ0 never rose
    # Gate low suspends mode 0 counting.
    r.out(0x61, 0x00)
    r.program(2, 0, 100)
    t0 = r.clock.now
    r.run_to(t0 + 1_000_000)
    assert r.latch(2) == 100 and not r.inb(0x61) & 0x20
    r.out(0x61, 0x01)
    g = r.tick_now()
    r.run_to(r.time_of_tick(g + 40))
    assert r.latch(2) == 60
    r.out(0x61, 0x00)                          # hold mid-count
    r.run_to(r.clock.now + 1_000_000)
    assert r.latch(2) == 60
    r.out(0x61, 0x03)                          # gate + speaker enable
    g = r.tick_now()
    r.run_to(r.time_of_tick(g + 59))
    assert not r.inb(0x61) & 0x20
    r.run_to(r.time_of_tick(g + 60))
    assert r.inb(0x61) & 0x20 and p61.speaker_output()
    assert r.inb(0x61) & 0xC0 == 0


def test_port61_mode2_gate_low_forces_out_high_and_restarts():
    r = Rig()
    r.out(0x61, 0x01)
    r.program(2, 2, 10)
    g = r.tick_now() + 1
    r.run_to(r.time_of_tick(g + 9))            # count 1: OUT low
    assert not r.inb(0x61) & 0x20
    r.out(0x61, 0x00)                          # gate low: OUT high at once
    assert r.inb(0x61) & 0x20
    r.out(0x61, 0x01)                          # rising gate reloads on the next pulse
    g = r.tick_now() + 1
    r.run_to(r.time_of_tick(g + 3))
    assert r.latch(2) == 7


def test_mode1_one_shot_triggered_by_gate():
    r = Rig()
    r.program(2, 1, 50)
    r.run_to(1_000_000)
    assert r.inb(0x61) & 0x20                  # no trigger yet: OUT high
    r.out(0x61, 0x01)                          # trigger
    g = r.tick_now()
    r.run_to(r.time_of_tick(g + 1))
    assert not r.inb(0x61) & 0x20              # low for N pulses
    r.run_to(r.time_of_tick(g + 50))
    assert not r.inb(0x61) & 0x20
    r.run_to(r.time_of_tick(g + 51))
    assert r.inb(0x61) & 0x20


def test_refresh_bit_toggles_with_virtual_time():
    r = Rig()
    half = 15_085 * IPS // 1_000_000_000       # instructions per 15.085 us
    seen = []
    for k in range(40):
        r.run_to(k * half // 2)
        seen.append(bool(r.inb(0x61) & 0x10))
    toggles = sum(a != b for a, b in zip(seen, seen[1:]))
    assert 18 <= toggles <= 20
    r.run_to(IPS // 1000)                      # 1 ms: ~66 half periods
    before = r.inb(0x61) & 0x10
    r.run_to(r.clock.now + half + 1)
    assert r.inb(0x61) & 0x10 != before


def test_word_port_access_and_control_port_reads():
    r = Rig()
    r.out(0x43, 0x30)
    r.bus.port_out(0x40, 2, 0x1234)            # two bytes to 0x40 and 0x41: only 0x40 counts
    r.out(0x40, 0x56)
    r.run_to(r.time_of_tick(r.tick_now() + 1))
    assert r.latch(0) == 0x5634
    assert r.inb(0x43) == 0xFF


def test_reset_idles_everything():
    r = Rig()
    r.program(0, 2, 100)
    assert r.clock.pending()
    r.pit.reset()
    assert r.clock.pending() == [] and not r.irq0.level


def _observe(r, until):
    obs = []
    step = 1_234_567
    while r.clock.now + step <= until:
        r.run_to(r.clock.now + step)
        obs.append((r.latch(0), r.latch(2), r.status(0), r.inb(0x61) & 0x30, r.irq0.level))
    return obs, r.rises()


def test_snapshot_restore_preserves_next_deadline_and_behaviour():
    a = Rig()
    a.run_to(777)
    a.out(0x61, 0x01)
    a.program(0, 2, 11932)
    a.program(2, 3, 1000)
    a.run_to(a.time_of_tick(a.tick_now() + 5000))
    a.out(0x40, 0x00); a.out(0x40, 0x10)       # pending mode 2 reload (4096)
    a.out(0x43, 0x80)                          # counter 2 latched, unread
    snap = a.pit.snapshot()
    assert snap["counters"][0]["next_period"] == 4096
    snap61 = a.port61.snapshot()
    pending = a.clock.pending()
    assert pending and pending[0][1] == "pit-out0"

    b = Rig()
    b.clock.advance(a.clock.now)
    b.pit.restore(snap)
    b.port61.restore(snap61)
    assert b.clock.pending() == pending
    assert b.irq0.level == a.irq0.level
    assert b.pit.snapshot() == snap
    first_a = a.inb(0x42) | a.inb(0x42) << 8   # the latched value survives
    first_b = b.inb(0x42) | b.inb(0x42) << 8
    assert first_a == first_b
    since = a.clock.now
    obs_a, rises_a = _observe(a, IPS // 2)
    obs_b, rises_b = _observe(b, IPS // 2)
    assert obs_a == obs_b
    assert [t for t in rises_a if t > since] == [t for t in rises_b if t > since]
    assert len(rises_b) > 10
