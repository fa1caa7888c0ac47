"""Several processors in one PC: start-up by INIT/STARTUP IPIs, IPI routing,
the I/O APIC by destination, the firmware's count of processors, and the
seeded schedule that interleaves them (SDM vol. 3, 8.4 and 10.6)."""

from __future__ import annotations

import struct

import pytest

from tvmm.machine import apic
from tvmm.machine.boot import firmware_tables
from tvmm.machine.errors import StopKind
from tvmm.machine.pc import PC
from tvmm.machine.sched import RR_QUANTUM, Schedule

ICR_LO, ICR_HI = 0xFEE00300, 0xFEE00310
COUNTER = 0x3000
ITERATIONS = 400

# Real mode at 0100:0000 (linear 0x1000): count ITERATIONS increments of the
# word at 0x3000, then HLT with interrupts off (halted for good).
RACY = bytes([0xB9, ITERATIONS & 0xFF, ITERATIONS >> 8,   # mov cx, N
              0xA1, 0x00, 0x30,                           # mov ax, [0x3000]
              0x40,                                       # inc ax
              0xA3, 0x00, 0x30,                           # mov [0x3000], ax
              0x49,                                       # dec cx
              0x75, 0xF6,                                 # jnz -10
              0xF4])                                      # hlt
LOCKED = bytes([0xB9, ITERATIONS & 0xFF, ITERATIONS >> 8,
                0xF0, 0xFF, 0x06, 0x00, 0x30,             # lock inc word [0x3000]
                0x49,
                0x75, 0xF8,                               # jnz -8
                0xF4])


def smp_pc(ncpus: int = 2, sched: str = "rr", code: bytes = RACY) -> PC:
    pc = PC(4 << 20, ncpus=ncpus, sched=sched)
    pc.mem.write_bytes(0x1000, code)
    from tvmm.machine import segments
    from tvmm.machine.consts import CS
    segments.set_cache(pc.cpu, CS, 0x100, 0x1000, 0xFFFF, 0x9B)
    pc.cpu.eip = 0
    return pc


def start_aps(pc: PC, vector: int = 0x01, dest: int | None = None) -> None:
    """What a kernel does: INIT, then STARTUP twice, from the BSP's APIC."""
    shorthand = 0 if dest is not None else 3 << 18                  # all but self
    pc.mem.write(ICR_HI, 4, (dest or 0) << 24)
    pc.mem.write(ICR_LO, 4, shorthand | 0x4500)                      # INIT, assert
    pc.mem.write(ICR_LO, 4, shorthand | 0x8500)                      # INIT, de-assert (level)
    for _ in range(2):
        pc.mem.write(ICR_LO, 4, shorthand | 0x4600 | vector)         # STARTUP


def run_to_end(pc: PC) -> tuple[int, list[int]]:
    stop = pc.run(10_000_000)
    assert stop.kind == StopKind.HALTED, stop
    return pc.mem.read(COUNTER, 2), [c.icount for c in pc.cpus]


# -- start-up ----------------------------------------------------------------------------------
def test_application_processors_wait_for_startup_and_start_in_real_mode_at_the_vector():
    pc = smp_pc(3)
    assert [c.wait_sipi for c in pc.cpus] == [False, True, True]
    assert pc.run(100).kind == StopKind.BUDGET
    assert [c.icount for c in pc.cpus[1:]] == [0, 0]               # never scheduled before SIPI
    start_aps(pc)
    for c in pc.cpus[1:]:
        assert not c.wait_sipi
        assert (c.seg_sel[1], c.seg_base[1], c.eip, c.protected) == (0x100, 0x1000, 0, False)
    count, icounts = run_to_end(pc)
    assert all(n > 0 for n in icounts)


def test_a_second_startup_ipi_is_ignored_and_init_puts_a_processor_back_to_waiting():
    pc = smp_pc()
    start_aps(pc)
    ap = pc.cpus[1]
    ap.eip = 0x1234
    pc.mem.write(ICR_LO, 4, (3 << 18) | 0x4602)                      # STARTUP again: ignored
    assert ap.eip == 0x1234 and ap.seg_sel[1] == 0x100
    pc.mem.write(ICR_LO, 4, (3 << 18) | 0x4500)                      # INIT
    assert ap.wait_sipi and ap.eip == 0xFFF0


def test_the_firmware_tables_and_fw_cfg_report_every_processor():
    pc = smp_pc(4)
    ptr = pc.mem.read_bytes(firmware_tables.EBDA, 16)
    assert ptr[:4] == b"_MP_"
    table = struct.unpack_from("<I", ptr, 4)[0]
    count = struct.unpack_from("<H", pc.mem.read_bytes(table + 34, 2))[0]
    entries = pc.mem.read_bytes(table + 44, count * 20)
    cpus, off = [], 0
    while off < len(entries) and entries[off] == 0:                  # processor entries come first
        cpus.append((entries[off + 1], entries[off + 3]))             # APIC ID, flags
        off += 20
    assert cpus == [(0, 3), (1, 1), (2, 1), (3, 1)]                   # enabled; the first is the BSP
    pc.bus.port_out(0x510, 2, 0x0005)                                 # fw_cfg: number of CPUs
    assert pc.bus.port_in(0x511, 1) == 4
    assert [c.msr[0x1B] & 0x100 for c in pc.cpus] == [0x100, 0, 0, 0]


# -- IPIs and the I/O APIC ----------------------------------------------------------------------
def test_fixed_ipis_reach_physical_logical_and_shorthand_destinations():
    pc = smp_pc(4)
    la = pc.lapics
    for i, a in enumerate(la):
        a.svr |= 0x100
        a.ldr = (1 << i) << 24                                        # flat model: one bit each
    apic.send_ipi(pc, 0, 2, apic.DM_FIXED, 0x40, apic.SH_NONE, True, 0)          # physical ID 2
    apic.send_ipi(pc, 0, 0b1001, apic.DM_FIXED, 0x41, apic.SH_NONE, True, 1)     # logical: 0 and 3
    apic.send_ipi(pc, 1, 0, apic.DM_FIXED, 0x42, apic.SH_ALL_BUT_SELF, True, 0)
    got = [{v for v in (0x40, 0x41, 0x42) if a.irr >> v & 1} for a in la]
    assert got == [{0x41, 0x42}, set(), {0x40, 0x42}, {0x41, 0x42}]


def test_lowest_priority_goes_to_the_lowest_task_priority_then_the_lowest_id():
    pc = smp_pc(3)
    for a in pc.lapics:
        a.svr |= 0x100
    pc.lapics[0].tpr, pc.lapics[1].tpr, pc.lapics[2].tpr = 0x20, 0x10, 0x10
    apic.send_ipi(pc, 0, 0xFF, apic.DM_LOWEST, 0x50, apic.SH_NONE, True, 0)
    assert [a.irr >> 0x50 & 1 for a in pc.lapics] == [0, 1, 0]


def test_an_nmi_ipi_is_taken_with_interrupts_disabled():
    pc = smp_pc()
    start_aps(pc)
    ap = pc.cpus[1]
    pc.mem.write_bytes(0x08, struct.pack("<HH", 0x0500, 0x0000))    # IVT[2] -> 0000:0500
    pc.mem.write_bytes(0x500, bytes([0xF4]))                       # hlt
    apic.send_ipi(pc, 0, 1, apic.DM_NMI, 0, apic.SH_NONE, True, 0)
    assert not ap.eflags & 0x200
    pc.switch_to(1)
    ap.run(1)
    assert ap.seg_base[1] + ap.eip == 0x501                        # ran the handler's HLT


def test_the_io_apic_delivers_to_the_destination_processor():
    pc = smp_pc(2)
    for a in pc.lapics:
        a.svr |= 0x100
    pc.ioapic.write_register(0x10 + 2 * 4, 0x31)                   # pin 4 -> vector 0x31, unmasked
    pc.ioapic.write_register(0x11 + 2 * 4, 1 << 24)                # to APIC ID 1
    pc.irq[4].set(True)
    assert [a.irr >> 0x31 & 1 for a in pc.lapics] == [0, 1]


def test_each_processor_sees_its_own_local_apic_at_the_same_address():
    pc = smp_pc(2)
    start_aps(pc)
    ids = []
    for i in range(2):
        pc.switch_to(i)
        ids.append(pc.mem.read(0xFEE00020, 4) >> 24)
    assert ids == [0, 1]


# -- the schedule -------------------------------------------------------------------------------
def test_round_robin_gives_each_processor_a_fixed_quantum_in_turn():
    s = Schedule("rr")
    picks = [s.pick(i % 3, [0, 1, 2]) for i in range(4)]
    assert picks == [(1, RR_QUANTUM), (2, RR_QUANTUM), (0, RR_QUANTUM), (1, RR_QUANTUM)]


def test_a_seed_fixes_the_random_schedule_and_different_seeds_differ():
    def draws(seed):
        s = Schedule(f"random:{seed}")
        return [s.pick(0, [0, 1]) for _ in range(200)]
    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    quanta = [q for _, q in draws(7)]
    assert min(quanta) <= 8 and max(quanta) > 256                  # short and long quanta both occur


def test_the_same_seed_gives_the_same_run_and_seeds_give_different_interleavings():
    results = {}
    for seed in range(1, 9):
        pc = smp_pc(2, f"random:{seed}")
        start_aps(pc)
        results[seed] = run_to_end(pc)
        pc2 = smp_pc(2, f"random:{seed}")
        start_aps(pc2)
        assert run_to_end(pc2) == results[seed]                   # byte-identical: counts and memory
    assert len({count for count, _ in results.values()}) > 1       # the race resolves differently
    assert any(count < 2 * ITERATIONS for count, _ in results.values())


@pytest.mark.parametrize("sched", ["rr", "random:1", "random:2", "random:3"])
def test_locked_instructions_are_atomic_in_every_interleaving(sched):
    pc = smp_pc(2, sched, LOCKED)
    start_aps(pc)
    count, _ = run_to_end(pc)
    assert count == 2 * ITERATIONS


def test_how_the_caller_slices_time_does_not_change_the_interleaving():
    def run(slice_insns):
        pc = smp_pc(2, "random:11")
        start_aps(pc)
        while pc.run(slice_insns).kind == StopKind.BUDGET:
            pass
        return pc.mem.read(COUNTER, 2), [c.icount for c in pc.cpus], pc.now()
    assert run(7) == run(1000) == run(10_000_000)


def test_guest_time_is_every_processors_instructions():
    pc = smp_pc(2)
    start_aps(pc)
    pc.run(1500)
    assert pc.now() == sum(c.icount for c in pc.cpus) + pc.idle == 1500
    assert sorted(c.icount for c in pc.cpus) == [500, RR_QUANTUM]          # quanta of the schedule
